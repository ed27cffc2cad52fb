"""The small quick RetinaNet (ResNet-18, 64-channel FPN, K = 3) and batches, shared by the meta-arch tests."""
from pathlib import Path

import torch

from retinadet.config import get_cfg
from retinadet.modeling import build_model
from retinadet.modeling.losses import smooth_l1_loss
from retinadet.modeling.matchers import IGNORE, POSITIVE
from retinadet.utils.synthetic import make_synthetic_batch

REPO = Path(__file__).resolve().parents[3]
QUICK_CONFIG = str(REPO / "configs" / "quick" / "retinanet_R_18_synthetic.yaml")
NUM_CLASSES = 3
H, W = 64, 96


def quick_cfg(*opts):
    """The quick config with ``KEY VALUE`` overrides."""
    cfg = get_cfg()
    cfg.merge_from_file(QUICK_CONFIG)
    cfg.merge_from_list([str(o) for o in opts])
    return cfg


def quick_model(*opts, seed=0):
    """A quick RetinaNet built after seeding torch with ``seed``."""
    torch.manual_seed(seed)
    return build_model(quick_cfg(*opts))


def quick_batch(num_images=2, height=H, width=W, seed=0):
    """A synthetic batch of the quick config's classes."""
    return make_synthetic_batch(num_images, height, width, num_classes=NUM_CLASSES, seed=seed)


def spread_scores(model, seed=0):
    """Class logits that vary from anchor to anchor (0.05 - 0.7), as after some training.

    With the prior bias alone every score is 0.01, below the 0.05 test threshold.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bias = model.head.cls_score.bias
        bias.copy_(torch.rand(bias.shape, generator=g) * 4.0 - 3.0)
        model.head.cls_score.weight.mul_(30.0)


def hand_matched(model, batch):
    """Per image, from the model's dense outputs and its matcher alone (not its loss code): a dict
    with "logits" (R, K), "deltas" (R, 4), "anchors" (R, 4) xyxy, "labels" (R,) matcher labels,
    "valid" (R,) bool (not IGNORE), "targets" (R, K) one-hot classes of the POSITIVE anchors,
    "box" the smooth-L1 (beta 0.1) sum over the foreground's encoded gt boxes, "num_pos"."""
    with torch.no_grad():
        logits, deltas, anchors = model.forward_features(model.preprocess_image(batch))
    logits, deltas, anchors = torch.cat(logits, 1), torch.cat(deltas, 1), torch.cat(anchors)
    images = []
    for i, item in enumerate(batch):
        matched_idxs, labels = model.matcher(item["boxes"], anchors)
        pos = labels == POSITIVE
        targets = torch.zeros_like(logits[i])
        targets[pos.nonzero()[:, 0], item["labels"][matched_idxs[pos]]] = 1.0
        gt_deltas = model.box_coder.encode(item["boxes"][matched_idxs[pos]], anchors[pos])
        images.append({
            "logits": logits[i], "deltas": deltas[i], "anchors": anchors, "labels": labels,
            "valid": labels != IGNORE, "targets": targets, "num_pos": int(pos.sum()),
            "box": smooth_l1_loss(deltas[i][pos], gt_deltas, beta=0.1).sum().item(),
        })
    return images

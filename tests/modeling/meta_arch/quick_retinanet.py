"""The small quick RetinaNet (ResNet-18, 64-channel FPN, K = 3) and batches, shared by the meta-arch tests."""
from pathlib import Path

import torch

from retinadet.config import get_cfg
from retinadet.modeling import build_model
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

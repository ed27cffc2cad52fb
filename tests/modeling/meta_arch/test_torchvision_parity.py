"""Parity with torchvision's retinanet_resnet50_fpn: same weights, same input, same numbers."""
import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from retinadet.checkpoint import convert_torchvision_retinanet, load_model_weights
from retinadet.config import get_cfg
from retinadet.modeling import build_model

CONFIG = "configs/torchvision/retinanet_R_50_FPN.yaml"
NUM_CLASSES = 91
SCORE_SPREAD = 30.0  # class-weight multiplier giving logits that differ across anchors
H, W = 256, 320  # multiples of 32, so torchvision pads nothing; P7 has 3 columns (stride 320 // 3)


def _torchvision_retinanet() -> nn.Module:
    """torchvision's retinanet_resnet50_fpn exactly as it is built for its pretrained weights.

    With ``weights`` given, torchvision builds the ResNet-50 with FrozenBatchNorm2d and 3 trainable
    stages; ``weights=None`` would switch to BatchNorm2d. These are the same calls without a download.
    """
    body = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(body, 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
    return torchvision.models.detection.RetinaNet(backbone, NUM_CLASSES, min_size=H, max_size=W)


def _randomise(model: nn.Module, generator: torch.Generator) -> None:
    """Give every frozen BN non-trivial statistics and the class output a spread of biases.

    With default statistics (mean 0, var 1) a misplaced norm would go unnoticed, and with the prior
    bias alone every score is 0.01 < 0.05 and inference would return nothing to compare. The last
    norm of each residual branch is scaled down, as training (or zero-init-residual) leaves it:
    otherwise a random ResNet-50 grows features of std ~100 and float32 rounding of the two
    equivalent input normalisations ((x - 255m) / 255s here, (x / 255 - m) / s in torchvision)
    is amplified to ~1e-3 px in the boxes.
    """
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            n = m.weight.numel()
            m.running_mean.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            m.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            m.bias.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
    for m in model.modules():
        if isinstance(m, torchvision.models.resnet.Bottleneck):
            m.bn3.weight.mul_(0.2)
    cls_logits = model.head.classification_head.cls_logits
    cls_logits.bias.data.copy_(torch.rand(cls_logits.bias.shape, generator=generator) * 4.0 - 3.0)
    # Scores that vary from anchor to anchor: near-ties would make NMS choices float noise.
    cls_logits.weight.data.mul_(SCORE_SPREAD)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    reference = _torchvision_retinanet()
    _randomise(reference, torch.Generator().manual_seed(1))
    reference.eval()

    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.freeze()
    ours = build_model(cfg)
    report = load_model_weights(ours, convert_torchvision_retinanet(reference.state_dict()))
    assert not report["missing"] and not report["unexpected"] and not report["skipped_shape"], report
    ours.eval()
    return reference, ours


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(2)
    images = [torch.randint(0, 256, (3, H, W), generator=g).float() for _ in range(2)]
    boxes = [
        torch.tensor([[10.0, 20.0, 120.0, 150.0], [200.0, 30.0, 300.0, 90.0], [40.0, 180.0, 90.0, 250.0]]),
        torch.tensor([[60.0, 60.0, 260.0, 200.0]]),
    ]
    labels = [torch.tensor([3, 17, 90]), torch.tensor([5])]
    return images, boxes, labels


def _reference_dense(reference, images):
    image_list, _ = reference.transform([im / 255.0 for im in images])
    features = list(reference.backbone(image_list.tensors).values())
    head = reference.head(features)
    anchors = reference.anchor_generator(image_list, features)
    return head, anchors


def test_head_outputs_and_anchors_match(models, batch):
    reference, ours = models
    images, _, _ = batch
    with torch.no_grad():
        ref_head, ref_anchors = _reference_dense(reference, images)
        logits, deltas, anchors = ours.forward_features(ours.preprocess_image([{"image": im} for im in images]))
    logits, deltas = torch.cat(logits, dim=1), torch.cat(deltas, dim=1)
    # R = 9 * (32*40 + 16*20 + 8*10 + 4*5 + 2*3) = 9 * 1706 = 15354 anchors per image.
    assert logits.shape == ref_head["cls_logits"].shape == (2, 15354, NUM_CLASSES)
    assert (logits - ref_head["cls_logits"]).abs().max() < 1e-4
    assert (deltas - ref_head["bbox_regression"]).abs().max() < 1e-4
    assert logits.std() > 0.5  # the randomised biases spread the logits: the comparison is not vacuous
    assert torch.equal(torch.cat(anchors), ref_anchors[0])
    assert torch.equal(torch.cat(anchors), ref_anchors[1])


def _assert_same_detections(actual, expected, tol=1e-3):
    """One-to-one match: every detection has a partner with the same label, score and box within tol.

    Position-by-position comparison would fail on float noise when two scores are nearly equal
    and NMS order swaps them, which says nothing about the method.
    """
    assert len(actual["boxes"]) == len(expected["boxes"])
    assert (actual["scores"] - expected["scores"]).abs().max() < tol  # both sorted by score
    unused = torch.ones(len(expected["boxes"]), dtype=torch.bool)
    for box, score, label in zip(actual["boxes"], actual["scores"], actual["labels"]):
        close = (
            unused
            & (expected["labels"] == label)
            & ((expected["scores"] - score).abs() < tol)
            & ((expected["boxes"] - box).abs().max(dim=1).values < tol)
        )
        assert close.any(), (box, score, label)
        unused[close.nonzero()[0]] = False


def test_detections_match(models, batch):
    reference, ours = models
    images, _, _ = batch
    with torch.no_grad():
        expected = reference([im / 255.0 for im in images])
        actual = ours([{"image": im, "height": H, "width": W} for im in images])
    for exp, act in zip(expected, actual):
        assert len(exp["boxes"]) == 300  # DETECTIONS_PER_IMAGE of the parity config
        assert len(exp["labels"].unique()) > 1
        _assert_same_detections(act, exp)


def test_losses_match(models, batch):
    reference, ours = models
    images, boxes, labels = batch
    reference.train()
    ours.train()
    try:
        expected = reference(
            [im / 255.0 for im in images], [{"boxes": b, "labels": l} for b, l in zip(boxes, labels)]
        )
        actual = ours([{"image": im, "boxes": b, "labels": l} for im, b, l in zip(images, boxes, labels)])
    finally:
        reference.eval()
        ours.eval()
    for ours_key, ref_key in (("loss_cls", "classification"), ("loss_box_reg", "bbox_regression")):
        ref = expected[ref_key]
        assert ref > 0
        assert abs(actual[ours_key].item() - ref.item()) / ref.item() < 1e-4, (ours_key, actual, expected)

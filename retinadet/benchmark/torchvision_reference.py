"""torchvision's RetinaNet and Faster R-CNN as the counterparts of ours: one way to build them, the
constants of their set-up and of their randomised weights, their weights converted into our model, and a
wrapper that puts them behind our model contract.

- ``build_torchvision_retinanet`` / ``build_torchvision_faster_rcnn``: the models of torchvision's
  ``retinanet_resnet50_fpn`` / ``fasterrcnn_resnet50_fpn`` built by the same calls in the same order (so
  the same seed gives the same weights), without a download, with the backbone set up as ours: FrozenBN
  (everywhere, or in the frozen stages only) and the stem and the first stages frozen by FREEZE_AT. The
  defaults (FREEZE_AT 2, FrozenBN) are how torchvision builds them for its pretrained weights.
- ``randomised_reference(recipe, ...)``: a seeded reference whose frozen norms and score layers get a
  spread of values (a recipe: PARITY_RETINANET and PARITY_FASTER_RCNN for the parity tests, BUSY_RETINANET
  for benchmarks/model.py), and ``ours_with_weights_of``: our model holding its converted weights.
- ``build_torchvision_model(cfg)``: the counterpart of a config's model behind our contract
  (``TorchvisionDetector``), for tools/benchmark.py's --compare-torchvision; COMPARABLE names the configs
  that have one.
"""
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from retinadet.checkpoint import (
    WeightLoadReport,
    convert_torchvision_faster_rcnn,
    convert_torchvision_retinanet,
    load_model_weights,
)
from retinadet.config import CfgNode, get_cfg
from retinadet.modeling import build_model

from .config import config_value
from .options import BenchmarkError

__all__ = ["BUSY_RETINANET", "COMPARABLE", "PARITY_FASTER_RCNN", "PARITY_RETINANET", "RESIDUAL_DAMPING",
           "TORCHVISION_NUM_CLASSES", "ReferenceRecipe", "TorchvisionDetector", "TorchvisionFasterRCNN",
           "TorchvisionRetinaNet", "build_torchvision_faster_rcnn", "build_torchvision_model",
           "build_torchvision_retinanet", "check_comparable", "freeze_batch_norm", "frozen_stage_names",
           "ours_with_weights_of", "randomise_frozen_batch_norm", "randomised_reference",
           "spread_faster_rcnn_scores", "spread_retinanet_class_scores", "torchvision_images"]

# torchvision's COCO heads: the background (0) and COCO's category ids 1..90.
TORCHVISION_NUM_CLASSES = 91


# ---------------------------------------------------------------------------- building
def frozen_stage_names(freeze_at: int) -> List[str]:
    """The children of torchvision's ResNet that our MODEL.BACKBONE.FREEZE_AT ``freeze_at`` freezes: the stem
    (conv1, bn1) from 1 on, and res2..res{freeze_at}, torchvision's layer1..layer{freeze_at - 1}."""
    return (["conv1", "bn1"] if freeze_at >= 1 else []) + [f"layer{i}" for i in range(1, freeze_at)]


def freeze_batch_norm(module: nn.Module, names: Optional[Sequence[str]] = None) -> None:
    """Replace, in place, every BatchNorm2d under ``module`` (under its children ``names`` only, when given)
    by a torchvision FrozenBatchNorm2d holding the same values."""
    for name, child in module.named_children():
        if names is not None and name not in names:
            continue
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            freeze_batch_norm(child)


def _resnet50(freeze_at: int, all_frozen_bn: bool) -> Tuple[ResNet, int]:
    """(a random ResNet-50 with FrozenBN everywhere, or in the stages ``freeze_at`` freezes, the number of
    trainable stages for torchvision's _resnet_fpn_extractor)."""
    body = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d if all_frozen_bn else nn.BatchNorm2d)
    if not all_frozen_bn:
        freeze_batch_norm(body, frozen_stage_names(freeze_at))
    return body, min(5, max(0, 5 - freeze_at))


def build_torchvision_retinanet(num_classes: int = TORCHVISION_NUM_CLASSES, *, freeze_at: int = 2,
                                all_frozen_bn: bool = True, min_size: int = 800, max_size: int = 1333) -> RetinaNet:
    """torchvision's RetinaNet with a random ResNet-50 FPN (P3-P7, P6 and P7 from P5) for ``num_classes``
    classes, built as retinanet_resnet50_fpn builds it; ``freeze_at`` and ``all_frozen_bn`` as in our
    MODEL.BACKBONE.FREEZE_AT and MODEL.RESNETS.NORM "FrozenBN"; its transform resizes images to
    ``min_size`` / ``max_size``."""
    body, trainable = _resnet50(freeze_at, all_frozen_bn)
    backbone = _resnet_fpn_extractor(body, trainable, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
    return RetinaNet(backbone, num_classes, min_size=min_size, max_size=max_size)


def build_torchvision_faster_rcnn(num_classes: int = TORCHVISION_NUM_CLASSES, *, freeze_at: int = 2,
                                  all_frozen_bn: bool = True, min_size: int = 800,
                                  max_size: int = 1333) -> FasterRCNN:
    """torchvision's Faster R-CNN with a random ResNet-50 FPN (P2-P6) for ``num_classes`` classes, background
    included, built as fasterrcnn_resnet50_fpn builds it; the other arguments as build_torchvision_retinanet's."""
    body, trainable = _resnet50(freeze_at, all_frozen_bn)
    return FasterRCNN(_resnet_fpn_extractor(body, trainable), num_classes, min_size=min_size, max_size=max_size)


# ---------------------------------------------------------------------------- randomised weights
# The last norm of each residual branch is scaled down, as training (or zero-init-residual) leaves it:
# otherwise a random ResNet-50 grows features of std ~100, and float32 rounding of the two equivalent input
# normalisations ((x - 255m) / 255s in ours, (x / 255 - m) / s in torchvision) shows in the boxes.
RESIDUAL_DAMPING = 0.2


def _uniform(shape: torch.Size, generator: torch.Generator, low: float, high: float) -> torch.Tensor:
    return torch.rand(shape, generator=generator) * (high - low) + low


@torch.no_grad()
def randomise_frozen_batch_norm(model: nn.Module, generator: torch.Generator, residual_scale: float = 1.0) -> None:
    """Give every FrozenBatchNorm2d of ``model``, in module order, a running mean and bias uniform in
    [-0.1, 0.1) and a running variance and weight uniform in [0.75, 1.25), drawn from ``generator``; then
    multiply the weight of the last norm of every residual branch by ``residual_scale``.

    With default statistics (mean 0, variance 1) a misplaced norm would go unnoticed."""
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            n = m.weight.numel()
            m.running_mean.copy_(_uniform(n, generator, -0.1, 0.1))
            m.running_var.copy_(_uniform(n, generator, 0.75, 1.25))
            m.weight.copy_(_uniform(n, generator, 0.75, 1.25))
            m.bias.copy_(_uniform(n, generator, -0.1, 0.1))
    if residual_scale != 1.0:
        for m in model.modules():
            if isinstance(m, Bottleneck):
                m.bn3.weight.mul_(residual_scale)


@torch.no_grad()
def spread_retinanet_class_scores(model: RetinaNet, generator: torch.Generator, bias_range: Tuple[float, float],
                                  weight_scale: float = 1.0) -> None:
    """Class-output biases of a torchvision RetinaNet uniform in ``bias_range`` (from ``generator``) and its
    class-output weights multiplied by ``weight_scale``. With the prior bias alone every score is 0.01,
    under the 0.05 threshold, and inference would skip post-processing."""
    cls_logits = model.head.classification_head.cls_logits
    cls_logits.bias.copy_(_uniform(cls_logits.bias.shape, generator, *bias_range))
    if weight_scale != 1.0:
        cls_logits.weight.mul_(weight_scale)


@torch.no_grad()
def spread_faster_rcnn_scores(model: FasterRCNN, generator: torch.Generator) -> None:
    """Objectness and class scores of a torchvision Faster R-CNN spread as after training.

    With its initial weights the RPN gives every anchor nearly the same objectness (top-k and NMS would
    pick among near-ties) and the classifier every class about 1/91 < 0.05: the RPN's objectness weights
    x 300 and biases uniform in [-2, 2), its box deltas' weights x 10; the class scores' weights x 100 and
    biases uniform in [0, 4), the box predictor's deltas' weights x 10."""
    objectness = model.rpn.head.cls_logits
    objectness.weight.mul_(300.0)
    objectness.bias.copy_(_uniform(objectness.bias.shape, generator, -2.0, 2.0))
    model.rpn.head.bbox_pred.weight.mul_(10.0)
    cls_score = model.roi_heads.box_predictor.cls_score
    cls_score.weight.mul_(100.0)
    cls_score.bias.copy_(_uniform(cls_score.bias.shape, generator, 0.0, 4.0))
    model.roi_heads.box_predictor.bbox_pred.weight.mul_(10.0)


@dataclass(frozen=True)
class ReferenceRecipe:
    """How ``randomised_reference`` builds a reference: ``build(min_size=, max_size=)``, the residual scale
    of its frozen norms and ``spread(model, generator)`` for its score layers."""

    build: Callable[..., nn.Module]
    residual_scale: float
    spread: Callable[[nn.Module, torch.Generator], None]


# The parity tests: damped residual branches; class logits that differ across anchors (weights x 30:
# near-ties would make NMS choices float noise) with biases in [-3, 1).
PARITY_RETINANET = ReferenceRecipe(build_torchvision_retinanet, RESIDUAL_DAMPING,
                                   partial(spread_retinanet_class_scores, bias_range=(-3.0, 1.0), weight_scale=30.0))
PARITY_FASTER_RCNN = ReferenceRecipe(build_torchvision_faster_rcnn, RESIDUAL_DAMPING, spread_faster_rcnn_scores)
# benchmarks/model.py: a busy image for a trained detector. Class biases uniform in [-10, -4) (the prior's
# -4.6 inside) let about 0.4% of the (anchor, class) scores of a 512 x 512 image through the threshold, so
# P3 and P4 fill their top-1000. Its residual branches are not damped: its timings were all measured so.
BUSY_RETINANET = ReferenceRecipe(build_torchvision_retinanet, 1.0,
                                 partial(spread_retinanet_class_scores, bias_range=(-10.0, -4.0)))


def randomised_reference(recipe: ReferenceRecipe, min_size: int, max_size: int, seed: int = 0) -> nn.Module:
    """The torchvision model of ``recipe`` built after ``torch.manual_seed(seed)``, resizing to
    ``min_size`` / ``max_size``, its frozen norms and score layers randomised by a generator seeded with
    ``seed + 1``."""
    torch.manual_seed(seed)
    model = recipe.build(min_size=min_size, max_size=max_size)
    generator = torch.Generator().manual_seed(seed + 1)
    randomise_frozen_batch_norm(model, generator, recipe.residual_scale)
    recipe.spread(model, generator)
    return model


def ours_with_weights_of(reference: nn.Module, config_file: str) -> Tuple[nn.Module, WeightLoadReport]:
    """(our model of ``config_file``, the WeightLoadReport of loading ``reference``'s weights into it):
    ``reference`` is a torchvision RetinaNet or FasterRCNN, its state dict converted to our names. A clean
    load has no ``missing``, ``unexpected`` or ``skipped_shape`` keys."""
    converters = ((RetinaNet, convert_torchvision_retinanet), (FasterRCNN, convert_torchvision_faster_rcnn))
    convert = next((c for kind, c in converters if isinstance(reference, kind)), None)
    if convert is None:
        raise TypeError(f"ours_with_weights_of converts a torchvision RetinaNet or FasterRCNN; got "
                        f"{type(reference).__name__}.")
    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    cfg.freeze()
    ours = build_model(cfg)
    return ours, load_model_weights(ours, convert(reference.state_dict()))


# ---------------------------------------------------------------------------- the counterpart of a config
# The config keys (besides MODEL.META_ARCHITECTURE) that make a config torchvision's architecture, per
# meta-architecture with a torchvision counterpart, and that counterpart's name.
COMPARABLE: Dict[str, Tuple[str, Dict[str, Any]]] = {
    "RetinaNet": ("retinanet_resnet50_fpn", {
        "MODEL.BACKBONE.NAME": "ResNet", "MODEL.RESNETS.DEPTH": 50, "MODEL.NECK.NAME": "FPN",
        "MODEL.HEAD.NAME": "RetinaNetHead",
    }),
    "GeneralizedRCNN": ("fasterrcnn_resnet50_fpn", {
        "MODEL.BACKBONE.NAME": "ResNet", "MODEL.RESNETS.DEPTH": 50, "MODEL.NECK.NAME": "FPN",
        "MODEL.PROPOSAL_GENERATOR.NAME": "RPN", "MODEL.ROI_HEADS.NAME": "StandardROIHeads",
        "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNFCHead",
    }),
}


def check_comparable(cfg: CfgNode) -> str:
    """The name of torchvision's counterpart of the config's model; raises BenchmarkError unless the config
    is a meta-architecture of COMPARABLE with every key that entry requires (a ResNet-50 FPN)."""
    arch = cfg.MODEL.META_ARCHITECTURE
    if arch not in COMPARABLE:
        known = ", ".join(f"{a} ({name})" for a, (name, _) in COMPARABLE.items())
        raise BenchmarkError(
            f"--compare-torchvision has a torchvision counterpart for MODEL.META_ARCHITECTURE {known}; this "
            f"config has MODEL.META_ARCHITECTURE {arch!r}."
        )
    name, required = COMPARABLE[arch]
    wrong = [f"{key} {config_value(cfg, key)!r} (needs {value!r})" for key, value in required.items()
             if config_value(cfg, key) != value]
    if wrong:
        raise BenchmarkError(
            f"--compare-torchvision times torchvision's {name} for {arch}, so it needs "
            + ", ".join(f"{key} {value!r}" for key, value in required.items())
            + f"; this config has {'; '.join(wrong)}."
        )
    return name


def torchvision_images(batch: List[Dict[str, Any]], bgr: bool) -> List[torch.Tensor]:
    """The batch's uint8 images as torchvision takes them: RGB floats in 0-1 (flipped from BGR when ``bgr``)."""
    return [(x["image"].flip(0) if bgr else x["image"]).float() / 255.0 for x in batch]


class TorchvisionDetector(nn.Module):
    """A torchvision detection model behind our model contract: a list of dicts in (uint8 images in
    INPUT.FORMAT order, training adds "boxes" (N, 4) xyxy and "labels" (N,) in [0, K)), a dict of
    ``loss_*`` terms (training) or detections (inference) out. Its backbone is set up like the config's.

    Subclasses give ``build(cfg) -> torchvision model``, ``label_offset`` (added to our labels) and
    ``loss_names`` (torchvision's loss name -> ours; unnamed ones keep torchvision's).
    """

    label_offset = 0
    loss_names: Dict[str, str] = {}

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        check_comparable(cfg)
        self.model = self.build(cfg)
        self.bgr = cfg.INPUT.FORMAT == "BGR"
        self.to(torch.device(cfg.MODEL.DEVICE))

    @staticmethod
    def backbone_setup(cfg: CfgNode) -> Dict[str, Any]:
        """The keyword arguments of build_torchvision_* that set the backbone up like the config's: ours
        uses FrozenBN everywhere with NORM FrozenBN, and in the frozen stages with any other norm."""
        return {"freeze_at": cfg.MODEL.BACKBONE.FREEZE_AT, "all_frozen_bn": cfg.MODEL.RESNETS.NORM == "FrozenBN"}

    def forward(self, batch: List[Dict[str, Any]]):
        """torchvision's model on ``batch`` at its own size: its detections (eval mode) or its losses under
        our names (training mode, the labels shifted by ``label_offset``)."""
        images = torchvision_images(batch, self.bgr)
        height, width = images[0].shape[-2:]
        # With these, torchvision's transform scales every image of the batch by exactly 1.
        self.model.transform.min_size = (min(height, width),)
        self.model.transform.max_size = max(height, width)
        if not self.training:
            return self.model(images)
        targets = [{"boxes": x["boxes"], "labels": x["labels"] + self.label_offset} for x in batch]
        return {self.loss_names.get(k, k): v for k, v in self.model(images, targets).items()}


class TorchvisionRetinaNet(TorchvisionDetector):
    """torchvision's retinanet_resnet50_fpn(num_classes=MODEL.RETINANET.NUM_CLASSES) as our RetinaNet's
    counterpart; its losses are returned as "loss_cls" and "loss_box_reg"."""

    loss_names = {"classification": "loss_cls", "bbox_regression": "loss_box_reg"}

    def build(self, cfg: CfgNode) -> RetinaNet:
        """torchvision's RetinaNet for the config's classes and backbone set-up."""
        return build_torchvision_retinanet(cfg.MODEL.RETINANET.NUM_CLASSES, **self.backbone_setup(cfg))


class TorchvisionFasterRCNN(TorchvisionDetector):
    """torchvision's fasterrcnn_resnet50_fpn(num_classes=MODEL.ROI_HEADS.NUM_CLASSES + 1) as our
    GeneralizedRCNN's counterpart. torchvision's class 0 is the background, so our label k is its k + 1;
    its losses keep torchvision's names (loss_classifier, loss_box_reg, loss_objectness, loss_rpn_box_reg)."""

    label_offset = 1

    def build(self, cfg: CfgNode) -> FasterRCNN:
        """torchvision's Faster R-CNN for the config's classes plus the background and its backbone set-up."""
        return build_torchvision_faster_rcnn(cfg.MODEL.ROI_HEADS.NUM_CLASSES + 1, **self.backbone_setup(cfg))


# torchvision's counterpart per MODEL.META_ARCHITECTURE (the names and required keys are in COMPARABLE).
TORCHVISION_MODELS = {"RetinaNet": TorchvisionRetinaNet, "GeneralizedRCNN": TorchvisionFasterRCNN}


def build_torchvision_model(cfg: CfgNode) -> TorchvisionDetector:
    """torchvision's counterpart of the config's model, set up like ours; BenchmarkError when it has none."""
    check_comparable(cfg)
    return TORCHVISION_MODELS[cfg.MODEL.META_ARCHITECTURE](cfg)

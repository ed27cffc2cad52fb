"""Rename torchvision RetinaNet (v1, v2), Faster R-CNN (v1) and ImageNet ResNet state-dict keys to
retinadet names."""
import re
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from .renaming import rename_state_dict

__all__ = [
    "convert_torchvision_retinanet",
    "convert_torchvision_faster_rcnn",
    "convert_torchvision_resnet",
    "looks_like_torchvision_retinanet",
    "looks_like_torchvision_faster_rcnn",
    "looks_like_torchvision_resnet",
]

# Parameter / buffer names of the layers found in these checkpoints: convs (weight, bias),
# BatchNorm / FrozenBatchNorm2d (weight, bias, running_mean, running_var, num_batches_tracked)
# and GroupNorm (weight, bias).
_PARAM = r"(?P<param>weight|bias|running_mean|running_var|num_batches_tracked)"

# torchvision.models.resnet module names, which retinadet's ResNet keeps as they are.
_RESNET_KEY = re.compile(
    r"^(?:conv1|bn1|layer\d+\.\d+\.(?:conv\d|bn\d|downsample\.[01]))\." + _PARAM + "$"
)

# RetinaNet._load_from_state_dict / FeaturePyramidNetwork._load_from_state_dict in
# torchvision/models/detection/retinanet.py and torchvision/ops/feature_pyramid_network.py
# upgrade two older layouts on load; both are accepted here too:
#   FPN  "inner_blocks.{i}.weight"   (plain conv)          -> now "inner_blocks.{i}.0.weight"
#   head "conv.{2k}.weight"          ([conv, relu] x 4)    -> now "conv.{k}.0.weight"
_FPN_KEY = re.compile(
    r"^backbone\.fpn\.(?P<block>inner_blocks|layer_blocks)\.(?P<level>\d+)\."
    r"(?:(?P<part>[01])\.)?" + _PARAM + "$"
)
_FPN_TOP_KEY = re.compile(r"^backbone\.fpn\.extra_blocks\.(?P<top>p6|p7)\." + _PARAM + "$")
# New layout: conv.{k}.{0: conv, 1: norm}.param; old v1 layout: conv.{2k}.param.
_HEAD_SUBNET_KEY = re.compile(
    r"^head\.(?P<subnet>classification_head|regression_head)\.conv\.(?P<index>\d+)\."
    r"(?:(?P<part>[01])\.)?" + _PARAM + "$"
)
_HEAD_OUT_KEY = re.compile(
    r"^head\.(?P<out>classification_head\.cls_logits|regression_head\.bbox_reg)\." + _PARAM + "$"
)

_FPN_BLOCK_TO_OURS = {
    ("inner_blocks", "0"): "lateral_convs",
    ("inner_blocks", "1"): "lateral_norms",
    ("layer_blocks", "0"): "output_convs",
    ("layer_blocks", "1"): "output_norms",
}
_TOP_TO_OURS = {"p6": "neck.top_convs.0", "p7": "neck.top_convs.1"}
_SUBNET_TO_OURS = {"classification_head": "head.cls_subnet", "regression_head": "head.bbox_subnet"}
_OUT_TO_OURS = {
    "classification_head.cls_logits": "head.cls_score",
    "regression_head.bbox_reg": "head.bbox_pred",
}


def _rename_body(key: str) -> Optional[str]:
    """``backbone.body.X`` -> ``backbone.X`` when X is a torchvision ResNet key, else None."""
    prefix = "backbone.body."
    if key.startswith(prefix) and _RESNET_KEY.match(key[len(prefix) :]):
        return "backbone." + key[len(prefix) :]
    return None


def _rename_fpn(match: re.Match[str]) -> str:
    part = match["part"] or "0"  # the old FPN layout has the conv directly at {i}
    module = _FPN_BLOCK_TO_OURS[(match["block"], part)]
    return f"neck.{module}.{match['level']}.{match['param']}"


def _rename_subnet(match: re.Match[str], head_has_norm: bool) -> str:
    """Map one subnet key to its index in retinadet's nn.Sequential of [conv, (norm), relu]."""
    index = int(match["index"])
    if match["part"] is None:
        # Old v1 layout: nn.Sequential(conv, relu, conv, relu, ...), conv k at 2k. It had no norm,
        # and retinadet's head without norm also puts conv k at 2k, so the index carries over.
        ours = index
    else:
        # Current layout: conv.{k} is Conv2dNormActivation(conv=0, [norm=1], relu).
        stride = 3 if head_has_norm else 2  # layers per block in retinadet's subnet
        ours = stride * index + int(match["part"])
    return f"{_SUBNET_TO_OURS[match['subnet']]}.{ours}.{match['param']}"


def _head_has_norm(keys: List[str]) -> bool:
    """True when any head subnet block holds a norm (``conv.{k}.1.*``), as in the v2 GN head."""
    for key in keys:
        match = _HEAD_SUBNET_KEY.match(key)
        if match and match["part"] == "1":
            return True
    return False


def _rename_retinanet_key(key: str, head_has_norm: bool) -> Optional[str]:
    """Return retinadet's name for one torchvision RetinaNet key, or None if unknown."""
    renamed = _rename_body(key)
    if renamed is not None:
        return renamed
    rules: List[Tuple[re.Pattern, Callable[[re.Match[str]], str]]] = [
        (_FPN_KEY, _rename_fpn),
        (_FPN_TOP_KEY, lambda m: f"{_TOP_TO_OURS[m['top']]}.{m['param']}"),
        (_HEAD_SUBNET_KEY, lambda m: _rename_subnet(m, head_has_norm)),
        (_HEAD_OUT_KEY, lambda m: f"{_OUT_TO_OURS[m['out']]}.{m['param']}"),
    ]
    for pattern, rename in rules:
        match = pattern.match(key)
        if match:
            return rename(match)
    return None


def convert_torchvision_retinanet(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Rename a torchvision ``retinanet_resnet50_fpn`` / ``_v2`` state dict to retinadet's names.

    ``backbone.body.X -> backbone.X``; ``backbone.fpn.inner_blocks.{i}.0/1 ->
    neck.lateral_convs/lateral_norms.{i}``; ``backbone.fpn.layer_blocks.{i}.0/1 ->
    neck.output_convs/output_norms.{i}``; ``backbone.fpn.extra_blocks.p6/p7 -> neck.top_convs.0/1``;
    ``head.classification_head.conv.{k}.0 -> head.cls_subnet.{2k}`` (head without norm) or
    ``{3k}`` with ``conv.{k}.1 -> {3k+1}`` (v2 GroupNorm head); ``cls_logits -> head.cls_score``;
    the regression head likewise to ``head.bbox_subnet`` / ``head.bbox_pred``. The older layouts
    (``conv.{2k}.weight`` head, ``inner_blocks.{i}.weight`` FPN) are accepted too.

    Note: v1 computes P6 from P5 and v2 from C5 (FPN.TOP_BLOCK_IN_FEATURE "p5" / "res5").

    Args:
        state_dict: torchvision RetinaNet state dict (name -> tensor).

    Returns:
        A new dict with the same tensors (not copied) under retinadet's names.

    Raises:
        ValueError: listing every key that is not part of a torchvision RetinaNet R-FPN.
    """
    head_has_norm = _head_has_norm(list(state_dict))
    return rename_state_dict(
        state_dict,
        lambda key: _rename_retinanet_key(key, head_has_norm),
        "torchvision RetinaNet",
        "torchvision.models.detection.retinanet_resnet50_fpn(_v2) (backbone.body.*, "
        "backbone.fpn.*, head.classification_head.*, head.regression_head.*)",
    )


# Faster R-CNN (fasterrcnn_resnet50_fpn): RPNHead's conv is "conv.0.0" (Conv2dNormActivation inside
# an nn.Sequential) since its _version 2, and plain "conv" before; RPNHead._load_from_state_dict
# upgrades the old name, and both are accepted here.
_RPN_KEY = re.compile(r"^rpn\.head\.(?P<layer>conv(?:\.0\.0)?|cls_logits|bbox_pred)\.(?P<param>weight|bias)$")
_RPN_TO_OURS = {
    "conv": "proposal_generator.head.conv",
    "conv.0.0": "proposal_generator.head.conv",
    "cls_logits": "proposal_generator.head.objectness_logits",
    "bbox_pred": "proposal_generator.head.anchor_deltas",
}
# TwoMLPHead fc6 / fc7 -> FastRCNNFCHead fc1 / fc2; FastRCNNPredictor keeps its layer names.
_ROI_KEY = re.compile(
    r"^roi_heads\.(?P<layer>box_head\.fc6|box_head\.fc7|box_predictor\.cls_score|box_predictor\.bbox_pred)"
    r"\.(?P<param>weight|bias)$"
)
_ROI_TO_OURS = {
    "box_head.fc6": "roi_heads.box_head.fc1",
    "box_head.fc7": "roi_heads.box_head.fc2",
    "box_predictor.cls_score": "roi_heads.box_predictor.cls_score",
    "box_predictor.bbox_pred": "roi_heads.box_predictor.bbox_pred",
}


def _rename_faster_rcnn_key(key: str) -> Optional[str]:
    """Return retinadet's name for one torchvision Faster R-CNN key, or None if unknown."""
    renamed = _rename_body(key)
    if renamed is not None:
        return renamed
    match = _FPN_KEY.match(key)
    if match:
        return _rename_fpn(match)
    match = _RPN_KEY.match(key)
    if match:
        return f"{_RPN_TO_OURS[match['layer']]}.{match['param']}"
    match = _ROI_KEY.match(key)
    if match:
        return f"{_ROI_TO_OURS[match['layer']]}.{match['param']}"
    return None


def _background_last(cls_score: Tensor, name: str) -> Tensor:
    """Rows ``[1, ..., K, 0]`` of torchvision's ``(K + 1, ...)`` classifier: background moves to the end."""
    if cls_score.shape[0] < 2:
        raise ValueError(
            f"{name} has {cls_score.shape[0]} row(s); a torchvision classifier has background plus at least one class."
        )
    return torch.cat((cls_score[1:], cls_score[:1]))


def _drop_background_boxes(bbox_pred: Tensor, name: str) -> Tensor:
    """Rows ``4:`` of torchvision's ``(4 (K + 1), ...)`` box regressor: the 4 background deltas go."""
    if bbox_pred.shape[0] % 4 != 0 or bbox_pred.shape[0] < 8:
        raise ValueError(
            f"{name} has {bbox_pred.shape[0]} rows; torchvision's class-specific box regressor has "
            "4 x (K + 1) rows, K >= 1."
        )
    return bbox_pred[4:]


def convert_torchvision_faster_rcnn(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Convert a torchvision ``fasterrcnn_resnet50_fpn`` state dict to retinadet's GeneralizedRCNN.

    Names: ``backbone.body.X -> backbone.X``; ``backbone.fpn.inner_blocks.{i} / layer_blocks.{i} ->
    neck.lateral_convs.{i} / neck.output_convs.{i}`` (P6 is a parameter-free max-pool);
    ``rpn.head.conv.0.0`` (or the older ``rpn.head.conv``) ``-> proposal_generator.head.conv``,
    ``rpn.head.cls_logits -> proposal_generator.head.objectness_logits``, ``rpn.head.bbox_pred ->
    proposal_generator.head.anchor_deltas``; ``roi_heads.box_head.fc6 / fc7 -> roi_heads.box_head.fc1 /
    fc2``; ``roi_heads.box_predictor.cls_score / bbox_pred`` keep their names.

    Values: torchvision's classifier has K + 1 outputs with background at index 0, retinadet's has
    background last. ``cls_score`` rows ``[1..K, 0]`` are reordered to ``[1..K]`` then ``0``, and the
    4 background rows of ``bbox_pred`` (never used by torchvision's inference) are dropped, so
    torchvision label L (1..K) is retinadet label L - 1. For COCO weights K = 90 (ids 1..90).

    Args:
        state_dict: torchvision Faster R-CNN (v1) state dict (name -> tensor).

    Returns:
        A new dict under retinadet's names; every tensor is the original one except the two
        rearranged predictor weights and biases.

    Raises:
        ValueError: listing every key that is not part of a torchvision Faster R-CNN R50-FPN v1, or
            when the predictor shapes are not those of K + 1 classes.
    """
    converted = rename_state_dict(
        state_dict,
        _rename_faster_rcnn_key,
        "torchvision Faster R-CNN",
        "torchvision.models.detection.fasterrcnn_resnet50_fpn (backbone.body.*, backbone.fpn.inner_blocks/"
        "layer_blocks.*, rpn.head.*, roi_heads.box_head.fc6/fc7.*, roi_heads.box_predictor.*)",
    )
    for param in ("weight", "bias"):
        key = f"roi_heads.box_predictor.cls_score.{param}"
        if key in converted:
            converted[key] = _background_last(converted[key], f"roi_heads.box_predictor.cls_score.{param}")
        key = f"roi_heads.box_predictor.bbox_pred.{param}"
        if key in converted:
            converted[key] = _drop_background_boxes(converted[key], f"roi_heads.box_predictor.bbox_pred.{param}")
    return converted


def convert_torchvision_resnet(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Prefix a torchvision ImageNet ResNet state dict with ``backbone.`` and drop ``fc.*``.

    Args:
        state_dict: ``torchvision.models.resnet*`` state dict (conv1, bn1, layer1..4, fc).

    Returns:
        A new dict with the backbone tensors (not copied) under ``backbone.<torchvision name>``.

    Raises:
        ValueError: listing every key that is neither a ResNet layer nor ``fc.*``.
    """
    def rename(key: str) -> Optional[str]:
        if key.startswith("fc."):
            return ""  # the ImageNet classifier has no counterpart in a detector
        return "backbone." + key if _RESNET_KEY.match(key) else None

    return rename_state_dict(
        state_dict, rename, "torchvision ResNet", "torchvision.models.resnet* (conv1, bn1, layer1..layer4, fc)"
    )


def looks_like_torchvision_retinanet(keys: List[str]) -> bool:
    """True when ``keys`` carry torchvision RetinaNet's characteristic prefixes."""
    prefixes = ("backbone.body.", "backbone.fpn.", "head.classification_head.")
    return any(k.startswith(prefixes) for k in keys)


def looks_like_torchvision_faster_rcnn(keys: List[str]) -> bool:
    """True when ``keys`` carry torchvision Faster R-CNN's characteristic prefixes (``rpn.head.``, or
    ``roi_heads.box_head.fc6.``); retinadet's own two-stage names never start with these."""
    return any(k.startswith(("rpn.head.", "roi_heads.box_head.fc6.")) for k in keys)


def looks_like_torchvision_resnet(keys: List[str]) -> bool:
    """True when ``keys`` are a bare torchvision ResNet's (``conv1.weight``, ``layer1.*``)."""
    return "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys)

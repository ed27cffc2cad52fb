"""Rename torchvision RetinaNet (v1, v2) and ImageNet ResNet state-dict keys to retinadet names."""
import re
from typing import Callable, Dict, List, Optional, Tuple

from torch import Tensor

from .renaming import rename_state_dict

__all__ = [
    "convert_torchvision_retinanet",
    "convert_torchvision_resnet",
    "looks_like_torchvision_retinanet",
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


def looks_like_torchvision_resnet(keys: List[str]) -> bool:
    """True when ``keys`` are a bare torchvision ResNet's (``conv1.weight``, ``layer1.*``)."""
    return "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys)

"""Rename detectron2 RetinaNet and Faster R-CNN state-dict keys (.pth and model-zoo .pkl) to retinadet's
names. A Mask R-CNN checkpoint converts its detection part; its ``roi_heads.mask_head.*`` keys are kept
under their own names, so loading reports them as unused. Checkpoints of other detectron2 architectures
(Cascade R-CNN, Keypoint R-CNN, Panoptic FPN, C4 models) are refused naming the architecture."""
# Key names checked against facebookresearch/detectron2:
#   detectron2/modeling/backbone/resnet.py   BasicStem.conv1; ResNet stages "res2".."res5"
#       (nn.Sequential of blocks); BottleneckBlock / BasicBlock conv1..conv3 and shortcut.
#   detectron2/layers/wrappers.py            Conv2d keeps its norm as the ".norm" submodule.
#   detectron2/layers/batch_norm.py          FrozenBatchNorm2d buffers weight, bias,
#       running_mean, running_var (no num_batches_tracked).
#   detectron2/modeling/backbone/fpn.py      FPN "fpn_lateral{stage}" / "fpn_output{stage}"
#       (stage = log2 stride), "bottom_up", "top_block"; LastLevelP6P7 p6 / p7.
#   detectron2/modeling/meta_arch/retinanet.py   RetinaNet buffers pixel_mean / pixel_std;
#       RetinaNetHead cls_subnet / bbox_subnet (nn.Sequential of [conv, (norm), ReLU]),
#       cls_score, bbox_pred.
#   detectron2/modeling/anchor_generator.py  DefaultAnchorGenerator.cell_anchors (a BufferList,
#       stored in older checkpoints as anchor_generator.cell_anchors.{i}).
#   detectron2/modeling/proposal_generator/rpn.py, rpn_head.py   RPN.rpn_head (StandardRPNHead:
#       conv, objectness_logits, anchor_deltas) and RPN.anchor_generator.
#   detectron2/modeling/roi_heads/box_head.py, fast_rcnn.py   FastRCNNConvFCHead fc1, fc2;
#       FastRCNNOutputLayers cls_score (K + 1, background last) and bbox_pred (K * 4).
import re
from typing import Dict, List, Optional

from torch import Tensor

from .renaming import rename_state_dict

__all__ = ["convert_detectron2", "looks_like_detectron2_checkpoint"]

_PARAM = r"(?P<param>weight|bias|running_mean|running_var|num_batches_tracked)"

_STEM_KEY = re.compile(r"^backbone\.bottom_up\.stem\.conv1\.(?P<norm>norm\.)?" + _PARAM + "$")
_BLOCK_KEY = re.compile(
    r"^backbone\.bottom_up\.res(?P<stage>\d+)\.(?P<block>\d+)\."
    r"(?P<conv>conv\d|shortcut)\.(?P<norm>norm\.)?" + _PARAM + "$"
)
_FPN_KEY = re.compile(
    r"^backbone\.fpn_(?P<kind>lateral|output)(?P<level>\d+)\.(?P<norm>norm\.)?" + _PARAM + "$"
)
_TOP_KEY = re.compile(r"^backbone\.top_block\.(?P<top>p6|p7)\." + _PARAM + "$")
# The head's module names are the same in both code bases.
_HEAD_KEY = re.compile(
    r"^head\.(?:cls_subnet\.\d+|bbox_subnet\.\d+|cls_score|bbox_pred)\." + _PARAM + "$"
)
_RPN_KEY = re.compile(r"^proposal_generator\.rpn_head\.(?P<module>conv|objectness_logits|anchor_deltas)\."
                      + _PARAM + "$")
# The box head's and predictor's names are the same in both code bases (background last in both).
_ROI_KEY = re.compile(r"^roi_heads\.(?:box_head\.fc\d+|box_predictor\.(?:cls_score|bbox_pred))\." + _PARAM + "$")
_MASK_KEY = re.compile(r"^roi_heads\.mask_head\.")
# Inference-only buffers: retinadet keeps pixel statistics in the config and computes anchors.
_DROPPED = re.compile(r"^(?:pixel_mean|pixel_std|(?:proposal_generator\.)?anchor_generator\..*)$")
# Key fragment -> the detectron2 architecture that has it and retinadet does not.
_OTHER_ARCHITECTURES = (
    ("roi_heads.box_head.0.", "Cascade R-CNN (CascadeROIHeads)"),
    ("roi_heads.box_predictor.0.", "Cascade R-CNN (CascadeROIHeads)"),
    ("roi_heads.keypoint_head.", "Keypoint R-CNN"),
    ("sem_seg_head.", "Panoptic FPN or a semantic segmentor"),
    ("roi_heads.res5.", "a C4 Faster R-CNN (Res5ROIHeads)"),
    ("roi_heads.box_head.conv", "Faster R-CNN with a conv box head (ROI_BOX_HEAD.NUM_CONV > 0)"),
)

_TOP_TO_OURS = {"p6": "neck.top_convs.0", "p7": "neck.top_convs.1"}


def _rename_stem(match: re.Match[str]) -> str:
    module = "bn1" if match["norm"] else "conv1"
    return f"backbone.{module}.{match['param']}"


def _rename_block(match: re.Match[str]) -> str:
    # detectron2 names stages after their feature (res2 = stride 4), torchvision after their
    # position (layer1 = first stage), so res{s} is layer{s-1}.
    layer = f"backbone.layer{int(match['stage']) - 1}.{match['block']}"
    conv = match["conv"]
    if conv == "shortcut":
        module = "downsample.1" if match["norm"] else "downsample.0"
    else:
        k = conv[len("conv") :]
        module = f"bn{k}" if match["norm"] else f"conv{k}"
    return f"{layer}.{module}.{match['param']}"


def _lowest_fpn_level(keys: List[str]) -> int:
    """Smallest stage among ``fpn_lateral{stage}`` keys (3 for RetinaNet's res3..res5 FPN)."""
    levels = [int(m["level"]) for m in map(_FPN_KEY.match, keys) if m]
    return min(levels) if levels else 0


def _rename_fpn(match: re.Match[str], lowest_level: int) -> str:
    # fpn_lateral3/4/5 hold the res3/res4/res5 laterals; retinadet's ModuleLists count from the
    # lowest input level, so index = stage - lowest stage.
    index = int(match["level"]) - lowest_level
    suffix = "norms" if match["norm"] else "convs"
    return f"neck.{match['kind']}_{suffix}.{index}.{match['param']}"


def _rename_key(key: str, lowest_level: int) -> Optional[str]:
    """Return retinadet's name for one detectron2 key, "" for a dropped key, None if unknown."""
    if _DROPPED.match(key):
        return ""
    if _HEAD_KEY.match(key) or _ROI_KEY.match(key) or _MASK_KEY.match(key):
        return key
    rpn = _RPN_KEY.match(key)
    if rpn:
        return f"proposal_generator.head.{rpn['module']}.{rpn['param']}"
    for pattern, rename in (
        (_STEM_KEY, _rename_stem),
        (_BLOCK_KEY, _rename_block),
        (_FPN_KEY, lambda m: _rename_fpn(m, lowest_level)),
        (_TOP_KEY, lambda m: f"{_TOP_TO_OURS[m['top']]}.{m['param']}"),
    ):
        match = pattern.match(key)
        if match:
            return rename(match)
    return None


def convert_detectron2(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Rename a detectron2 RetinaNet or Faster / Mask R-CNN R-FPN state dict (e.g. a model-zoo
    ``model_final_*.pkl``).

    ``backbone.bottom_up.stem.conv1[.norm] -> backbone.conv1 / bn1``;
    ``backbone.bottom_up.res{s}.{i}.conv{k}[.norm] -> backbone.layer{s-1}.{i}.conv{k} / bn{k}``;
    ``...shortcut[.norm] -> ...downsample.0 / downsample.1``;
    ``backbone.fpn_lateral{3,4,5}[.norm] -> neck.lateral_convs / lateral_norms.{0,1,2}``;
    ``backbone.fpn_output{3,4,5}[.norm] -> neck.output_convs / output_norms.{0,1,2}``;
    ``backbone.top_block.p6/p7 -> neck.top_convs.0/1``; ``head.*`` unchanged;
    ``proposal_generator.rpn_head.* -> proposal_generator.head.*``; ``roi_heads.box_head.fc*`` and
    ``roi_heads.box_predictor.*`` unchanged (both put the background class last); ``roi_heads.mask_head.*``
    kept as they are (unused by retinadet's models: the load report lists them);
    ``pixel_mean``, ``pixel_std`` and ``anchor_generator.*`` dropped.

    detectron2's MSRA-initialised models run the ResNet with the stride in the 1x1 conv
    (RESNETS.STRIDE_IN_1X1 True), on BGR input with its own PIXEL_MEAN / PIXEL_STD, and P6 from
    C5; the config that loads these weights has to say the same.

    Args:
        state_dict: detectron2 RetinaNet state dict (name -> tensor).

    Returns:
        A new dict with the same tensors (not copied) under retinadet's names.

    Raises:
        ValueError: listing every key that is not part of those, or naming the other detectron2
            architecture the keys come from (Cascade / Keypoint R-CNN, Panoptic FPN, C4).
    """
    keys = list(state_dict)
    for fragment, architecture in _OTHER_ARCHITECTURES:
        found = [k for k in keys if k.startswith(fragment)]
        if found:
            raise ValueError(f"This detectron2 checkpoint looks like {architecture} (keys such as {found[:3]}), "
                             "which retinadet does not have; it loads detectron2 RetinaNet, Faster R-CNN and the "
                             "detection part of Mask R-CNN (R-FPN).")
    lowest_level = _lowest_fpn_level(keys)
    return rename_state_dict(
        state_dict,
        lambda key: _rename_key(key, lowest_level),
        "detectron2",
        "a detectron2 RetinaNet or Faster / Mask R-CNN R-FPN (backbone.bottom_up.*, backbone.fpn_lateral*/"
        "fpn_output*, backbone.top_block.*, head.* or proposal_generator.rpn_head.* and roi_heads.box_head.* / "
        "box_predictor.* / mask_head.*, pixel_mean/std)",
    )


def looks_like_detectron2_checkpoint(keys: List[str]) -> bool:
    """True when ``keys`` carry detectron2's characteristic prefixes (bottom_up, fpn_lateral)."""
    return any(k.startswith(("backbone.bottom_up.", "backbone.fpn_lateral")) for k in keys)

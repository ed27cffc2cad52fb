"""Reading detectron2's YAML configs: recognise them by their keys and translate them to retinadet's.

A loaded config (its ``_BASE_`` chain merged) is detectron2's when it says ``VERSION: 2`` or uses a key
that only detectron2 has. ``translate_detectron2`` then starts from detectron2's defaults (not ours: the
two differ in pixel statistics, channel order, the ResNet stride, the smooth-L1 beta, clipping, ...),
applies the file's values (each checked against the type of detectron2's default) and gives every
detectron2 key its disposition from ``detectron2_keys.DETECTRON2_KEYS``: mapped to a retinadet key,
accepted only at the value retinadet supports (anything else is an error naming the key, the value, the
file and why), or ignored with a documented reason. Nothing is dropped silently. Keys that are
retinadet's own and not detectron2's (e.g. ``DATASETS.ROOT`` in a user's file that names a detectron2
config as its ``_BASE_``) are applied after the translation.

Returns a nested dict of retinadet keys, merged by ``CfgNode.merge_from_file`` as any file's values.
"""
import difflib
import logging
from typing import Any, Dict, List, Tuple

from fvcore.common.config import CfgNode as _FvcoreCfgNode

from .detectron2_keys import (
    DETECTRON2_KEYS, IGNORED_SECTION_REASON, IGNORED_SECTIONS, JOINT_GROUPS, LABEL_NAMES, Fixed, Ignored, Joint, Map,
)

__all__ = ["looks_like_detectron2", "translate_detectron2", "IMPLIED"]

logger = logging.getLogger(__name__)

# retinadet keys with no detectron2 key whose value detectron2's behaviour fixes: key -> (value, why).
IMPLIED: Dict[str, Tuple[Any, str]] = {
    "MODEL.MATCHER.CROWD_IOA_THRESHOLD": (2.0, "detectron2's mapper drops crowd annotations, so no anchor or "
                                               "proposal is ignored for covering a crowd region"),
    "MODEL.RETINANET.CLIP_BEFORE_NMS": (False, "detectron2's RetinaNet runs NMS on unclipped boxes and clips after"),
    "TEST.DROP_EMPTY_BOXES": (True, "detectron2's detector_postprocess drops boxes left empty by the clipping"),
}


# Meta-architecture -> prefixes of retinadet keys that only the other detector reads.
_UNUSED_BY = {
    "RetinaNet": ("MODEL.RPN.", "MODEL.ROI_HEADS.", "MODEL.ROI_BOX_HEAD."),
    "GeneralizedRCNN": ("MODEL.RETINANET.", "MODEL.HEAD.", "MODEL.CLS_LOSS.", "MODEL.BOX_LOSS.", "MODEL.BOX_CODER.",
                        "MODEL.MATCHER.THRESHOLDS", "MODEL.MATCHER.LABELS"),
}


def _flatten(node: Dict, prefix: str = "") -> Dict[str, Any]:
    flat: Dict[str, Any] = {}
    for key, value in node.items():
        if key == "_BASE_":
            continue
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _nest(flat: Dict[str, Any]) -> Dict:
    nested: Dict = {}
    for key, value in flat.items():
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def _is_detectron2_key(key: str) -> bool:
    return key in DETECTRON2_KEYS or key.startswith(IGNORED_SECTIONS)


def looks_like_detectron2(loaded: Dict, retinadet_keys: List[str]) -> bool:
    """True when the loaded config says ``VERSION: 2`` or uses a key detectron2 has and retinadet lacks."""
    flat = _flatten(loaded)
    if flat.get("VERSION") == 2:
        return True
    ours = set(retinadet_keys)
    return any(_is_detectron2_key(key) and key not in ours for key in flat)


def _decoded(value: Any) -> Any:
    """A YAML string as detectron2's config reads it: a Python literal (``("coco_2017_train",)``, ``(60000,
    80000)``) becomes its value (fvcore's ``_decode_cfg_value``: ``ast.literal_eval``, literals only,
    nothing runs); other text stays."""
    return _FvcoreCfgNode._decode_cfg_value(value)


def _same_kind(value: Any, default: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def _normalised(value: Any) -> Any:
    return [_normalised(v) for v in value] if isinstance(value, (list, tuple)) else value


class _Translator:
    def __init__(self, flat: Dict[str, Any], source: str) -> None:
        self.source = source
        self.given = {key: _decoded(value) for key, value in flat.items()}
        self.values = {key: default for key, (default, _) in DETECTRON2_KEYS.items()}
        self.values.update({k: v for k, v in self.given.items() if k in DETECTRON2_KEYS})
        self.out: Dict[str, Any] = {}

    def error(self, key: str, message: str) -> ValueError:
        return ValueError(f"detectron2 config key {key} = {self.values.get(key, self.given.get(key))!r} "
                          f"(from {self.source}) {message}")

    def check_types(self) -> None:
        for key, value in self.given.items():
            if key in DETECTRON2_KEYS and not _same_kind(value, DETECTRON2_KEYS[key][0]):
                default = DETECTRON2_KEYS[key][0]
                raise self.error(key, f"has the wrong type: {type(value).__name__}; detectron2's default is "
                                      f"{default!r} ({type(default).__name__}).")

    def apply(self) -> Dict[str, Any]:
        self.check_types()
        for key, (_, disposition) in DETECTRON2_KEYS.items():
            value = self.values[key]
            if isinstance(disposition, Map):
                self.out[disposition.target] = disposition.convert(value) if disposition.convert else value
            elif isinstance(disposition, Fixed):
                if _normalised(value) not in [_normalised(a) for a in disposition.allowed]:
                    allowed = ", ".join(repr(a) for a in disposition.allowed)
                    raise self.error(key, f"asks for what retinadet lacks: {disposition.reason} (accepted: {allowed}).")
        for group in ("resnet_width", "architecture", "anchors", "retinanet_matcher", "rpn_matcher", "roi_matcher",
                      "retinanet_box_loss", "box_head", "detections", "weight_decay_bias", "device"):
            getattr(self, f"_{group}")()
        for key, (value, _) in IMPLIED.items():
            self.out[key] = value
        # The other detector's keys build nothing: they stay at retinadet's defaults.
        unused = _UNUSED_BY[self.out["MODEL.META_ARCHITECTURE"]]
        return {key: value for key, value in self.out.items() if not key.startswith(unused)}

    def _resnet_width(self) -> None:
        depth, width = self.values["MODEL.RESNETS.DEPTH"], self.values["MODEL.RESNETS.WIDTH_PER_GROUP"]
        res2 = self.values["MODEL.RESNETS.RES2_OUT_CHANNELS"]
        if depth >= 50 and width * self.values["MODEL.RESNETS.NUM_GROUPS"] * 4 != res2:
            raise self.error("MODEL.RESNETS.WIDTH_PER_GROUP", f"gives a bottleneck width other than RES2_OUT_CHANNELS / 4 "
                                                              f"= {res2 / 4:g}; retinadet derives the width from "
                                                              "RES2_OUT_CHANNELS (ResNeXt widths are not supported).")

    def _architecture(self) -> None:
        arch, backbone = self.values["MODEL.META_ARCHITECTURE"], self.values["MODEL.BACKBONE.NAME"]
        self.out.update({"MODEL.BACKBONE.NAME": "ResNet", "MODEL.NECK.NAME": "FPN"})
        if arch == "RetinaNet":
            if backbone != "build_retinanet_resnet_fpn_backbone":
                raise self.error("MODEL.BACKBONE.NAME", "is not a backbone retinadet has for RetinaNet; accepted: "
                                                        "'build_retinanet_resnet_fpn_backbone' (ResNet-FPN, P6 from C5).")
            self.out.update({"MODEL.META_ARCHITECTURE": "RetinaNet", "MODEL.FPN.TOP_BLOCK": "conv",
                             "MODEL.FPN.TOP_BLOCK_IN_FEATURE": "res5", "MODEL.FPN.NUM_TOP_LEVELS": 2})
        elif arch == "GeneralizedRCNN":
            if backbone != "build_resnet_fpn_backbone":
                raise self.error("MODEL.BACKBONE.NAME", "is not a backbone retinadet has for Faster R-CNN (a C4 "
                                                        "backbone has no FPN); accepted: 'build_resnet_fpn_backbone'.")
            if self.values["MODEL.ROI_HEADS.NAME"] != "StandardROIHeads":
                raise self.error("MODEL.ROI_HEADS.NAME", "is not supported; accepted: 'StandardROIHeads' (the FPN "
                                                         "ROI heads; Res5ROIHeads and CascadeROIHeads are not).")
            self.out.update({"MODEL.META_ARCHITECTURE": "GeneralizedRCNN", "MODEL.ROI_HEADS.NAME": "StandardROIHeads",
                             "MODEL.FPN.TOP_BLOCK": "maxpool", "MODEL.FPN.TOP_BLOCK_IN_FEATURE": "p5",
                             "MODEL.FPN.NUM_TOP_LEVELS": 1})
        else:
            raise self.error("MODEL.META_ARCHITECTURE", "is not a detector retinadet has; accepted: 'RetinaNet', "
                                                        "'GeneralizedRCNN' (Faster R-CNN).")

    def _anchors(self) -> None:
        sizes, ratios = self.values["MODEL.ANCHOR_GENERATOR.SIZES"], self.values["MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS"]
        in_features = (self.values["MODEL.RETINANET.IN_FEATURES"] if self.out["MODEL.META_ARCHITECTURE"] == "RetinaNet"
                       else self.values["MODEL.RPN.IN_FEATURES"])
        if not sizes or not all(isinstance(level, (list, tuple)) and level for level in sizes):
            raise self.error("MODEL.ANCHOR_GENERATOR.SIZES", "must be a list of lists of sizes, one per level (or one "
                                                             "for all levels).")
        levels = [list(sizes[0])] * len(in_features) if len(sizes) == 1 else [list(level) for level in sizes]
        first = levels[0]
        scales = [size / first[0] for size in first]
        for level in levels:
            if len(level) != len(scales) or any(abs(s - level[0] * k) > 1e-9 * abs(s) for s, k in zip(level, scales)):
                raise self.error("MODEL.ANCHOR_GENERATOR.SIZES", "gives levels sizes that are not one base size times "
                                                                 f"the same multipliers {scales}; retinadet's anchors are "
                                                                 "SIZES (one per level) x SCALES.")
        if any(list(r) != list(ratios[0]) for r in ratios):
            raise self.error("MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "differs between levels; retinadet uses one list "
                                                                     "for all levels.")
        self.out.update({"MODEL.ANCHOR_GENERATOR.SIZES": [float(level[0]) for level in levels],
                         "MODEL.ANCHOR_GENERATOR.SCALES": [float(k) for k in scales],
                         "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [float(r) for r in ratios[0]]})

    def _labels(self, key: str) -> List[str]:
        labels = self.values[key]
        if any(label not in LABEL_NAMES for label in labels):
            raise self.error(key, f"has labels outside {sorted(LABEL_NAMES)} (0 negative, -1 ignore, 1 positive).")
        return [LABEL_NAMES[label] for label in labels]

    def _matcher(self, prefix: str, thresholds_key: str, labels_key: str) -> None:
        self.out[thresholds_key] = [float(t) for t in self.values[f"{prefix}.IOU_THRESHOLDS"]]
        self.out[labels_key] = self._labels(f"{prefix}.IOU_LABELS")

    def _retinanet_matcher(self) -> None:
        self._matcher("MODEL.RETINANET", "MODEL.MATCHER.THRESHOLDS", "MODEL.MATCHER.LABELS")

    def _rpn_matcher(self) -> None:
        self._matcher("MODEL.RPN", "MODEL.RPN.IOU_THRESHOLDS", "MODEL.RPN.IOU_LABELS")

    def _roi_matcher(self) -> None:
        self._matcher("MODEL.ROI_HEADS", "MODEL.ROI_HEADS.IOU_THRESHOLDS", "MODEL.ROI_HEADS.IOU_LABELS")

    def _retinanet_box_loss(self) -> None:
        kind = self.values["MODEL.RETINANET.BBOX_REG_LOSS_TYPE"]
        if kind == "smooth_l1":
            self.out.update({"MODEL.BOX_LOSS.NAME": "SmoothL1Loss",
                             "MODEL.BOX_LOSS.BETA": float(self.values["MODEL.RETINANET.SMOOTH_L1_LOSS_BETA"])})
        elif kind == "giou":
            self.out["MODEL.BOX_LOSS.NAME"] = "GIoULoss"
        else:
            raise self.error("MODEL.RETINANET.BBOX_REG_LOSS_TYPE", "is not a box loss retinadet has; accepted: "
                                                                   "'smooth_l1', 'giou'.")

    def _box_head(self) -> None:
        if self.out["MODEL.META_ARCHITECTURE"] != "GeneralizedRCNN":
            return
        if self.values["MODEL.ROI_BOX_HEAD.NAME"] != "FastRCNNConvFCHead":
            raise self.error("MODEL.ROI_BOX_HEAD.NAME", "is not a box head retinadet has; accepted: "
                                                        "'FastRCNNConvFCHead' (with NUM_CONV 0: FastRCNNFCHead).")
        pooler = self.values["MODEL.ROI_BOX_HEAD.POOLER_TYPE"]
        if pooler not in ("ROIAlignV2", "ROIAlign"):
            raise self.error("MODEL.ROI_BOX_HEAD.POOLER_TYPE", "is not supported; accepted: 'ROIAlignV2', 'ROIAlign'.")
        self.out.update({"MODEL.ROI_BOX_HEAD.NAME": "FastRCNNFCHead",
                         "MODEL.ROI_BOX_HEAD.POOLER_ALIGNED": pooler == "ROIAlignV2"})

    def _detections(self) -> None:
        count = self.values["TEST.DETECTIONS_PER_IMAGE"]
        self.out["MODEL.RETINANET.DETECTIONS_PER_IMAGE"] = count
        self.out["MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE"] = count

    def _weight_decay_bias(self) -> None:
        value = self.values["SOLVER.WEIGHT_DECAY_BIAS"]
        self.out["SOLVER.WEIGHT_DECAY_BIAS"] = float(self.values["SOLVER.WEIGHT_DECAY"] if value is None else value)

    def _device(self) -> None:
        # The machine chooses the device: detectron2's default "cuda" is not imposed, a file's own value is.
        if "MODEL.DEVICE" in self.given:
            self.out["MODEL.DEVICE"] = self.values["MODEL.DEVICE"]


def translate_detectron2(loaded: Dict, source: str, retinadet_keys: List[str]) -> Dict:
    """The retinadet config (a nested dict) that a loaded detectron2 config means (module docstring).
    ValueError / KeyError naming the key, its value and ``source`` for anything that cannot be honoured."""
    flat = _flatten(loaded)
    ours = set(retinadet_keys)
    extra = {}
    for key, value in flat.items():
        if _is_detectron2_key(key):
            continue
        if key not in ours:
            known = list(DETECTRON2_KEYS) + list(ours)
            hint = difflib.get_close_matches(key, known, n=1, cutoff=0.0)
            raise KeyError(f"Unknown config key '{key}' (from {source}), which is neither detectron2's nor "
                           f"retinadet's." + (f" Did you mean '{hint[0]}'?" if hint else ""))
        extra[key] = value
    ignored = sorted(k for k in flat if k.startswith(IGNORED_SECTIONS))
    if ignored:
        logger.info("%s: %d detectron2 keys ignored (%s): %s", source, len(ignored), IGNORED_SECTION_REASON, ignored)
    translated = _Translator(flat, source).apply()
    translated.update(extra)
    return _nest(translated)


def disposition_table() -> List[Tuple[str, str, str]]:
    """(detectron2 key, what retinadet does, detail) for every key: the documented list of the README."""
    rows = []
    for key, (_, disposition) in DETECTRON2_KEYS.items():
        if isinstance(disposition, Map):
            rows.append((key, "mapped", disposition.target))
        elif isinstance(disposition, Joint):
            rows.append((key, "mapped", JOINT_GROUPS[disposition.group]))
        elif isinstance(disposition, Fixed):
            rows.append((key, f"only {', '.join(repr(a) for a in disposition.allowed)}", disposition.reason))
        elif isinstance(disposition, Ignored):
            rows.append((key, "ignored", disposition.reason))
    rows.extend((f"{section}*", "ignored", IGNORED_SECTION_REASON) for section in IGNORED_SECTIONS)
    return rows

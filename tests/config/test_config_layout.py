"""The shipped configs' layout: shallow _BASE_ chains, one shared recipe for compared detectors, and no
file that undoes what its bases set."""
import glob
import os

import pytest
import yaml

from retinadet.config import get_cfg
from retinadet.config.config import CfgNode

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
FILES = sorted(glob.glob(os.path.join(CONFIGS, "**", "*.yaml"), recursive=True))
RECIPE_SECTIONS = ("DATASETS", "INPUT", "DATALOADER", "SOLVER", "MODEL_EMA")


def _bases(path):
    raw = yaml.safe_load(open(path)) or {}
    bases = raw.get("_BASE_", [])
    bases = [bases] if isinstance(bases, str) else bases
    return [os.path.normpath(os.path.join(os.path.dirname(path), b)) for b in bases]


def _is_base(path):
    return os.path.basename(path).startswith("Base-")


def _levels_to_a_base(path):
    """_BASE_ steps from ``path`` to the nearest Base-*.yaml above it (0 for a Base-*.yaml itself)."""
    if _is_base(path):
        return 0
    return 1 + min((_levels_to_a_base(b) for b in _bases(path)), default=99)


def _own_keys(path):
    raw = yaml.safe_load(open(path)) or {}
    raw.pop("_BASE_", None)

    def flatten(node, prefix=""):
        for k, v in node.items():
            if isinstance(v, dict):
                yield from flatten(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    return dict(flatten(raw))


def _value(cfg, key):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def _merged_bases(path):
    cfg = get_cfg()
    for base in _bases(path):
        cfg.merge_from_other_cfg(CfgNode(CfgNode.load_yaml_with_base(base)))
    return cfg


def test_the_configs_are_found():
    names = {os.path.relpath(f, CONFIGS) for f in FILES}
    assert {"Base-RetinaNet.yaml", "Base-RCNN-FPN.yaml", "Base-Shapes.yaml", "shapes/retinanet_R_18_FPN.yaml",
            "shapes/faster_rcnn_R_18_FPN.yaml", "quick/retinanet_R_18_shapes_tiny.yaml"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: os.path.relpath(p, CONFIGS))
def test_every_leaf_is_at_most_two_levels_from_a_base(path):
    assert _levels_to_a_base(path) <= 2


@pytest.mark.parametrize("path", [f for f in FILES if _bases(f)], ids=lambda p: os.path.relpath(p, CONFIGS))
def test_no_file_undoes_or_repeats_its_bases(path):
    """A key a file sets must change its bases' value, and not back to the default they moved away from."""
    merged, defaults = _merged_bases(path), get_cfg()
    for key, value in _own_keys(path).items():
        before, default = _value(merged, key), _value(defaults, key)
        as_loaded = type(before)(value) if isinstance(before, (tuple, list)) else value
        assert as_loaded != before, f"{key} repeats its bases' value {before!r}"
        assert not (before != default and as_loaded == default), f"{key} undoes its bases' {before!r}"


def test_the_compared_shapes_detectors_share_one_recipe_file():
    """tools/compare.py --preset two-stage: both detectors take data, input and solver from Base-Shapes.yaml
    and neither sets a recipe key itself, so the comparison's budget cannot drift."""
    recipe = os.path.join(CONFIGS, "Base-Shapes.yaml")
    for leaf in ("shapes/retinanet_R_18_FPN.yaml", "shapes/faster_rcnn_R_18_FPN.yaml"):
        path = os.path.join(CONFIGS, leaf)
        chain, todo = set(), [path]
        while todo:
            current = todo.pop()
            chain.add(current)
            todo.extend(_bases(current))
        assert recipe in chain, leaf
        for file in chain - {recipe}:
            own = [k for k in _own_keys(file) if k.split(".")[0] in RECIPE_SECTIONS]
            assert own == [], (file, own)
    retinanet, rcnn = get_cfg(), get_cfg()
    retinanet.merge_from_file(os.path.join(CONFIGS, "shapes/retinanet_R_18_FPN.yaml"))
    rcnn.merge_from_file(os.path.join(CONFIGS, "shapes/faster_rcnn_R_18_FPN.yaml"))
    for section in RECIPE_SECTIONS:
        assert retinanet[section] == rcnn[section], section
    for key in ("DEPTH", "NORM", "STEM_OUT_CHANNELS", "RES2_OUT_CHANNELS"):
        assert retinanet.MODEL.RESNETS[key] == rcnn.MODEL.RESNETS[key], key
    assert retinanet.MODEL.META_ARCHITECTURE == "RetinaNet" and rcnn.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"

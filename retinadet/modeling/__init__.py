"""Model parts; importing this package registers every built-in part in its registry."""
from . import (
    anchor_generators,
    backbones,
    box_coders,
    heads,
    losses,
    matchers,
    meta_arch,
    necks,
    proposal_generators,
    roi_heads,
    samplers,
)
from .build import build, build_model
from .shape_spec import ShapeSpec

__all__ = [
    "anchor_generators",
    "backbones",
    "box_coders",
    "heads",
    "losses",
    "matchers",
    "meta_arch",
    "necks",
    "proposal_generators",
    "roi_heads",
    "samplers",
    "build",
    "build_model",
    "ShapeSpec",
]

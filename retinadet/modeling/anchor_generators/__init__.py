"""Anchor generators: pyramid feature sizes -> anchors per level; importing registers them."""
from .default import DefaultAnchorGenerator, grid_anchors
from .torchvision_compat import TorchvisionAnchorGenerator

__all__ = ["DefaultAnchorGenerator", "TorchvisionAnchorGenerator", "grid_anchors"]

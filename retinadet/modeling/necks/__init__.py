"""Necks: backbone features -> pyramid features; importing registers them in NECK_REGISTRY."""
from .fpn import FPN

__all__ = ["FPN"]

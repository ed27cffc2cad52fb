"""ShapeSpec: what a feature map looks like, passed from part to part instead of config keys."""
from dataclasses import dataclass

__all__ = ["ShapeSpec"]


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride (input pixels per feature pixel) of one feature map."""

    channels: int
    stride: int

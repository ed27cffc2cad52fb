"""Box coders: turn boxes into regression deltas relative to anchors and back."""
from .delta_xywh import DeltaXYWHBoxCoder

__all__ = ["DeltaXYWHBoxCoder"]

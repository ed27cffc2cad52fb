"""Data types shared by the model parts: padded image batches and box helpers."""
from .boxes import clip_boxes, scale_boxes
from .image_list import ImageList

__all__ = ["ImageList", "clip_boxes", "scale_boxes"]

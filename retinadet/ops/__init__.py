"""Box operators used by every part of the model: IoU and NMS (boxes are (N, 4) xyxy)."""
from .boxes import batched_box_iou, box_area, box_iou
from .extension import extension_loaded
from .nms import batched_nms, nms

__all__ = ["box_area", "box_iou", "batched_box_iou", "nms", "batched_nms", "extension_loaded"]

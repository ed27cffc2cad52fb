"""Box operators used by every part of the model: IoU, matching and NMS (boxes are (N, 4) xyxy).

Each runs the compiled op of ``retinadet._C`` when it loaded, else a pure-PyTorch/torchvision
fallback with the same results; ``extension_loaded()`` tells which, and ``RETINADET_DISABLE_EXT=1``
forces the fallback.
"""
from .boxes import batched_box_iou, box_area, box_ioa, box_iou, paired_intersection_and_enclosure
from .extension import extension_load_error, extension_loaded
from .matching import low_quality_matches, match_max_iou
from .nms import batched_nms, nms

__all__ = [
    "box_area", "box_iou", "batched_box_iou", "box_ioa", "paired_intersection_and_enclosure", "match_max_iou",
    "low_quality_matches", "nms", "batched_nms", "extension_loaded", "extension_load_error",
]

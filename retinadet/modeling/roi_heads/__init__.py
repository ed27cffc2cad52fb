"""Region heads of the two-stage detector (ROIAlign pooling, box head, Fast R-CNN outputs)."""
from .box_head import FastRCNNFCHead
from .fast_rcnn import FastRCNNPredictor, fast_rcnn_inference, fast_rcnn_losses
from .pooler import ROIPooler, assign_fpn_levels
from .roi_heads import StandardROIHeads

__all__ = [
    "FastRCNNFCHead",
    "FastRCNNPredictor",
    "fast_rcnn_inference",
    "fast_rcnn_losses",
    "ROIPooler",
    "assign_fpn_levels",
    "StandardROIHeads",
]

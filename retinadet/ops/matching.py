"""What an IoU matcher needs, without the N x M IoU matrix: O(N + M) memory.

Compiled op when ``retinadet._C`` is loaded, else the chunked fallback with the same results.
"""
from typing import Tuple

import torch
from torch import Tensor

from . import fallback
from .extension import use_compiled

__all__ = ["match_max_iou", "low_quality_matches"]


def match_max_iou(anchors: Tensor, gt_boxes: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Match ``anchors (N, 4)`` against ``gt_boxes (M, 4)``, both xyxy.

    Returns:
        max_iou: ``(N,)`` each anchor's highest IoU over the gt boxes (0 when M == 0).
        argmax: ``(N,)`` int64 index of the first gt box reaching it (0 when the IoU is 0).
        best_anchor_iou_per_gt: ``(M,)`` each gt box's highest IoU over the anchors.
    """
    fallback.check_same_device("match_max_iou", anchors=anchors, gt_boxes=gt_boxes)
    if isinstance(anchors, Tensor) and use_compiled("match_max_iou", anchors.device):
        return tuple(torch.ops.retinadet.match_max_iou(anchors, gt_boxes))
    return fallback.match_max_iou(anchors, gt_boxes)


def low_quality_matches(anchors: Tensor, gt_boxes: Tensor, best_anchor_iou_per_gt: Tensor) -> Tensor:
    """``(N,)`` bool: anchors whose IoU with some gt box equals that gt's best IoU (when > 0).

    ``best_anchor_iou_per_gt (M,)`` is the third output of :func:`match_max_iou`; ties are kept, so
    every anchor sharing a gt's highest IoU is flagged (the low-quality matches of Faster R-CNN).
    """
    fallback.check_same_device("low_quality_matches", anchors=anchors, gt_boxes=gt_boxes,
                               best_anchor_iou_per_gt=best_anchor_iou_per_gt)
    if isinstance(anchors, Tensor) and use_compiled("low_quality_matches", anchors.device):
        return torch.ops.retinadet.low_quality_matches(anchors, gt_boxes, best_anchor_iou_per_gt)
    return fallback.low_quality_matches(anchors, gt_boxes, best_anchor_iou_per_gt)

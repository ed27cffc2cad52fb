"""Box IoU: the compiled op when ``retinadet._C`` is loaded, else the fallback with the same results.

Boxes are xyxy in absolute coordinates. float32 and float64 everywhere; float16 and bfloat16 on
CUDA (computed in float32 inside). Zero-area boxes give IoU 0, never NaN. Bad arguments raise
ValueError naming the argument.
"""
from typing import Tuple

import torch
from torch import Tensor

from . import fallback
from .extension import use_compiled
from .fallback import box_area

__all__ = ["box_area", "box_iou", "batched_box_iou", "box_ioa", "paired_intersection_and_enclosure"]


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of every box of ``boxes1 (N, 4)`` with every box of ``boxes2 (M, 4)`` -> ``(N, M)``.

    Differentiable. No memory beyond the output is allocated by the compiled op.
    """
    fallback.check_same_device("box_iou", boxes1=boxes1, boxes2=boxes2)
    if isinstance(boxes1, Tensor) and use_compiled("box_iou", boxes1.device):
        return torch.ops.retinadet.box_iou(boxes1, boxes2)
    return fallback.box_iou(boxes1, boxes2)


def batched_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Per-image IoU of ``boxes1 (B, N, 4)`` with ``boxes2 (B, M, 4)`` -> ``(B, N, M)``.

    For padded batches: rows of padding (all-zero boxes) have zero area and give IoU 0.
    """
    fallback.check_same_device("batched_box_iou", boxes1=boxes1, boxes2=boxes2)
    if isinstance(boxes1, Tensor) and use_compiled("batched_box_iou", boxes1.device):
        return torch.ops.retinadet.batched_box_iou(boxes1, boxes2)
    return fallback.batched_box_iou(boxes1, boxes2)


def paired_intersection_and_enclosure(boxes1: Tensor, boxes2: Tensor) -> Tuple[Tensor, Tensor]:
    """Intersection and smallest-enclosing-box areas of the i-th boxes of two ``(F, 4)`` sets -> two ``(F,)``.

    The paired (i-th with i-th) form box losses need, differentiable, not the (N, M) matrix.
    """
    fallback.check_same_device("paired_intersection_and_enclosure", boxes1=boxes1, boxes2=boxes2)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    inter_w = (torch.min(x2, x2g) - torch.max(x1, x1g)).clamp(min=0)
    inter_h = (torch.min(y2, y2g) - torch.max(y1, y1g)).clamp(min=0)
    enclose = (torch.max(x2, x2g) - torch.min(x1, x1g)) * (torch.max(y2, y2g) - torch.min(y1, y1g))
    return inter_w * inter_h, enclose


def box_ioa(boxes: Tensor, regions: Tensor) -> Tensor:
    """Share of each box covered by each region: intersection / area of ``boxes (N, 4)`` -> ``(N, K)``.

    For the few crowd regions of an image (K small); pure PyTorch. Zero-area boxes give 0.
    """
    fallback.check_same_device("box_ioa", boxes=boxes, regions=regions)
    fallback.check_boxes("box_ioa", "boxes", boxes)
    fallback.check_boxes("box_ioa", "regions", regions)
    lt = torch.max(boxes[:, None, :2], regions[None, :, :2])
    rb = torch.min(boxes[:, None, 2:], regions[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area = box_area(boxes)[:, None]
    positive = area > 0
    return torch.where(positive, inter / torch.where(positive, area, torch.ones_like(area)), torch.zeros_like(inter))

"""Non-maximum suppression: torchvision's kernels behind argument checks."""
import torch
import torchvision
from torch import Tensor

from .boxes import check_boxes

__all__ = ["nms", "batched_nms"]


def _check_nms_args(boxes: Tensor, scores: Tensor, iou_threshold: float) -> None:
    check_boxes("boxes", boxes)
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"scores must have shape ({boxes.shape[0]},) to match boxes; got {tuple(scores.shape)}."
        )
    if scores.device != boxes.device:
        raise ValueError(f"scores are on {scores.device} but boxes on {boxes.device}.")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1]; got {iou_threshold}.")
    if boxes.numel() and not bool(torch.isfinite(boxes).all()):
        raise ValueError("boxes contain NaN or inf.")
    if scores.numel() and bool(torch.isnan(scores).any()):
        raise ValueError("scores contain NaN.")


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS of ``boxes (N, 4)`` xyxy by ``scores (N,)``.

    Returns the int64 indices kept, in decreasing score order (torchvision's results).
    """
    _check_nms_args(boxes, scores, iou_threshold)
    return torchvision.ops.nms(boxes, scores.to(boxes.dtype), float(iou_threshold))


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS applied independently per category ``idxs (N,)``.

    Returns the int64 indices kept, in decreasing score order (torchvision's results).
    """
    _check_nms_args(boxes, scores, iou_threshold)
    if idxs.dim() != 1 or idxs.shape[0] != boxes.shape[0]:
        raise ValueError(f"idxs must have shape ({boxes.shape[0]},); got {tuple(idxs.shape)}.")
    return torchvision.ops.batched_nms(boxes, scores.to(boxes.dtype), idxs, float(iou_threshold))

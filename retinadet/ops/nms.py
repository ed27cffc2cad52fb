"""Non-maximum suppression: the compiled op when ``retinadet._C`` is loaded, else torchvision's.

Both give torchvision's results: the same indices in the same order, ties included. While a model
is traced for export (retinadet.export), torchvision's ops run, so the graph loads without retinadet.
"""
import torch
import torchvision
from torch import Tensor

from . import fallback, traced_nms
from .extension import use_compiled

__all__ = ["nms", "batched_nms"]


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS of ``boxes (N, 4)`` xyxy by ``scores (N,)``.

    A box is dropped when its IoU with a higher-scoring kept box is > ``iou_threshold`` (in [0, 1]).
    Returns the int64 indices kept, in decreasing score order (ties by index).
    """
    if traced_nms.exporting():  # an exported graph must not need retinadet's ops to load
        return torchvision.ops.nms(boxes, scores, float(iou_threshold))
    fallback.check_same_device("nms", boxes=boxes, scores=scores)
    if isinstance(boxes, Tensor) and use_compiled("nms", boxes.device):
        return torch.ops.retinadet.nms(boxes, scores, float(iou_threshold))
    return fallback.nms(boxes, scores, iou_threshold)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS applied independently within each category ``idxs (N,)`` (integer ids).

    Returns the int64 indices kept, in decreasing score order: torchvision's per-category results
    (its ``batched_nms`` for N > 1000 on the CPU). Unlike torchvision's offset trick for small N,
    boxes are never shifted, so huge coordinates keep their precision.
    """
    if traced_nms.exporting():
        # An exported graph must not need retinadet's ops to load: per-class torchvision NMS, scripted
        # (TorchScript) or ONNX's multi-class NonMaxSuppression, with the same results (traced_nms.py).
        return traced_nms.traced_batched_nms(boxes, scores, idxs, iou_threshold)
    fallback.check_same_device("batched_nms", boxes=boxes, scores=scores, idxs=idxs)
    if isinstance(boxes, Tensor) and use_compiled("batched_nms", boxes.device):
        return torch.ops.retinadet.batched_nms(boxes, scores, idxs, float(iou_threshold))
    return fallback.batched_nms(boxes, scores, idxs, iou_threshold)

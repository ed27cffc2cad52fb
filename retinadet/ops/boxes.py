"""Pure-PyTorch box IoU: the reference implementation and the fallback of the compiled op."""
import torch
from torch import Tensor

__all__ = ["box_area", "box_iou", "batched_box_iou", "check_boxes"]


def check_boxes(name: str, boxes: Tensor, rank: int = 2) -> None:
    """Raise ValueError unless ``boxes`` is a floating tensor of rank ``rank`` ending in 4."""
    if not isinstance(boxes, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of boxes; got {type(boxes).__name__}.")
    if boxes.dim() != rank or boxes.shape[-1] != 4:
        expected = "(N, 4)" if rank == 2 else "(B, N, 4)"
        raise ValueError(f"{name} must have shape {expected} xyxy; got {tuple(boxes.shape)}.")
    if not boxes.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor; got dtype {boxes.dtype}.")


def _check_pair(a: Tensor, b: Tensor, rank: int) -> None:
    check_boxes("boxes1", a, rank)
    check_boxes("boxes2", b, rank)
    if a.dtype != b.dtype or a.device != b.device:
        raise ValueError(
            f"boxes1 and boxes2 must share dtype and device; got {a.dtype} on {a.device} "
            f"and {b.dtype} on {b.device}."
        )


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``(..., 4)`` xyxy boxes, ``(...)``; inverted boxes give a negative area."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of (..., N, 4) and (..., M, 4) xyxy boxes -> (..., N, M); zero union gives 0."""
    area_a = box_area(a)
    area_b = box_area(b)
    lt = torch.max(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.min(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    # Same arithmetic as torchvision.ops.box_iou, so ties at matcher thresholds agree bit for bit;
    # a zero union (two zero-area boxes) gives IoU 0 instead of 0/0 = NaN.
    return torch.where(union > 0, inter / union, torch.zeros_like(inter))


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU of ``boxes1 (N, 4)`` and ``boxes2 (M, 4)`` xyxy -> ``(N, M)``."""
    _check_pair(boxes1, boxes2, rank=2)
    return _iou(boxes1, boxes2)


def batched_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Per-image IoU of ``(B, N, 4)`` and ``(B, M, 4)`` xyxy boxes -> ``(B, N, M)``.

    Rows of padding (all-zero boxes) have zero area and give IoU 0.
    """
    _check_pair(boxes1, boxes2, rank=3)
    if boxes1.shape[0] != boxes2.shape[0]:
        raise ValueError(
            f"boxes1 and boxes2 must have the same batch size; got {boxes1.shape[0]} and "
            f"{boxes2.shape[0]}."
        )
    return _iou(boxes1, boxes2)

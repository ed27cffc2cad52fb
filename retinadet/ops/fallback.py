"""Pure-PyTorch (and torchvision) implementations of every compiled op, with the same results.

They serve when ``retinadet._C`` is missing and are the reference the compiled ops are tested
against. Boxes are xyxy. Reduced-precision boxes (float16/bfloat16, CUDA only) are computed in
float32 and the results rounded back, as the CUDA kernels do.
"""
from typing import Tuple

import torch
import torchvision
from torch import Tensor

__all__ = [
    "check_boxes", "check_same_device", "box_area", "pairwise_iou", "box_iou", "batched_box_iou", "match_max_iou",
    "low_quality_matches", "nms", "batched_nms",
]

_REDUCED = (torch.float16, torch.bfloat16)
# Anchors per chunk in the matching fallbacks: chunk * M IoUs at a time keeps memory O(N + M).
_MATCH_CHUNK_ELEMENTS = 1 << 22


def check_boxes(op: str, name: str, boxes: Tensor, rank: int = 2) -> None:
    """Raise ValueError unless ``boxes`` is a finite float tensor of shape (N, 4) or (B, N, 4)."""
    shape = "(N, 4)" if rank == 2 else "(B, N, 4)"
    if not isinstance(boxes, Tensor):
        raise ValueError(f"{op}: {name} must be a torch.Tensor of {shape} boxes; got {type(boxes).__name__}.")
    if boxes.dim() != rank or boxes.shape[-1] != 4:
        raise ValueError(f"{op}: {name} must have shape {shape} xyxy; got {list(boxes.shape)}.")
    if not boxes.is_floating_point():
        raise ValueError(f"{op}: {name} must be a floating tensor; got dtype {boxes.dtype}.")
    _check_dtype(op, name, boxes)
    if boxes.numel() and not bool(torch.isfinite(boxes).all()):
        raise ValueError(f"{op}: {name} contains NaN or inf coordinates.")


def _check_dtype(op: str, name: str, t: Tensor) -> None:
    if t.dtype in (torch.float32, torch.float64) or (t.dtype in _REDUCED and t.device.type != "cpu"):
        return
    raise ValueError(
        f"{op}: {name} has dtype {t.dtype} on {t.device}; supported: float32 and float64, plus "
        f"float16 and bfloat16 on CUDA."
    )


def _check_same(op: str, name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.dtype != b.dtype or a.device != b.device:
        raise ValueError(
            f"{op}: {name_a} and {name_b} must share dtype and device; got {a.dtype} on {a.device} "
            f"and {b.dtype} on {b.device}."
        )


def check_same_device(op: str, **tensors: Tensor) -> None:
    """Raise ValueError unless every tensor among ``tensors`` (argument name -> value; non-tensors are
    left to the other checks) lies on one device, naming each argument's device otherwise."""
    named = [(name, t) for name, t in tensors.items() if isinstance(t, Tensor)]
    if len({t.device for _, t in named}) > 1:
        where = ", ".join(f"{name} on {t.device}" for name, t in named)
        raise ValueError(f"{op}: the inputs must lie on one device; got {where}.")


def _compute_dtype(t: Tensor) -> torch.dtype:
    return torch.float32 if t.dtype in _REDUCED else t.dtype


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``(..., 4)`` xyxy boxes, ``(...)``; inverted boxes give a negative area. Floating boxes
    keep their dtype; integer boxes are computed in int64, so narrow types cannot overflow (int8
    100 x 100 boxes give 10000, as torchvision's upcast does)."""
    if not isinstance(boxes, Tensor) or boxes.dim() < 1 or boxes.shape[-1] != 4:
        got = list(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"box_area: boxes must have shape (..., 4) xyxy, e.g. (N, 4); got {got}.")
    if not boxes.is_floating_point():
        boxes = boxes.to(torch.int64)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def pairwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of ``(..., N, 4)`` and ``(..., M, 4)`` xyxy boxes -> ``(..., N, M)``, no argument checks.

    Same arithmetic as torchvision's ``box_iou`` (so ties at thresholds agree bit for bit), except
    that a union <= 0 gives 0 instead of NaN; gradients stay finite there too.
    """
    area_a = box_area(a)
    area_b = box_area(b)
    lt = torch.max(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.min(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    positive = union > 0
    quotient = inter / torch.where(positive, union, torch.ones_like(union))
    return torch.where(positive, quotient, torch.zeros_like(quotient))


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of ``boxes1 (N, 4)`` with ``boxes2 (M, 4)``, xyxy -> ``(N, M)``."""
    check_same_device("box_iou", boxes1=boxes1, boxes2=boxes2)
    check_boxes("box_iou", "boxes1", boxes1)
    check_boxes("box_iou", "boxes2", boxes2)
    _check_same("box_iou", "boxes1", boxes1, "boxes2", boxes2)
    dtype = _compute_dtype(boxes1)
    return pairwise_iou(boxes1.to(dtype), boxes2.to(dtype)).to(boxes1.dtype)


def batched_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Per-image IoU of ``(B, N, 4)`` and ``(B, M, 4)`` xyxy boxes -> ``(B, N, M)``."""
    check_same_device("batched_box_iou", boxes1=boxes1, boxes2=boxes2)
    check_boxes("batched_box_iou", "boxes1", boxes1, rank=3)
    check_boxes("batched_box_iou", "boxes2", boxes2, rank=3)
    _check_same("batched_box_iou", "boxes1", boxes1, "boxes2", boxes2)
    if boxes1.shape[0] != boxes2.shape[0]:
        raise ValueError(
            f"batched_box_iou: boxes1 and boxes2 must have the same batch size; got "
            f"{boxes1.shape[0]} and {boxes2.shape[0]}."
        )
    dtype = _compute_dtype(boxes1)
    return pairwise_iou(boxes1.to(dtype), boxes2.to(dtype)).to(boxes1.dtype)


def _anchor_chunks(num_anchors: int, num_gt: int):
    step = max(1, _MATCH_CHUNK_ELEMENTS // max(num_gt, 1))
    return [(s, min(s + step, num_anchors)) for s in range(0, num_anchors, step)]


def match_max_iou(anchors: Tensor, gt_boxes: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Per anchor the highest IoU with ``gt_boxes (M, 4)`` and its first index, per gt the highest IoU.

    Returns ``(max_iou (N,), argmax (N,) int64, best_anchor_iou_per_gt (M,))``; computed in chunks
    of anchors so memory stays O(N + M).
    """
    check_same_device("match_max_iou", anchors=anchors, gt_boxes=gt_boxes)
    check_boxes("match_max_iou", "anchors", anchors)
    check_boxes("match_max_iou", "gt_boxes", gt_boxes)
    _check_same("match_max_iou", "anchors", anchors, "gt_boxes", gt_boxes)
    n, m = anchors.shape[0], gt_boxes.shape[0]
    dtype = _compute_dtype(anchors)
    max_iou = anchors.new_zeros(n, dtype=dtype)
    argmax = torch.zeros(n, dtype=torch.int64, device=anchors.device)
    best = anchors.new_zeros(m, dtype=dtype)
    if n and m:
        gt = gt_boxes.to(dtype)
        for start, end in _anchor_chunks(n, m):
            iou = pairwise_iou(gt, anchors[start:end].to(dtype))  # (M, chunk)
            max_iou[start:end], argmax[start:end] = iou.max(dim=0)
            best = torch.maximum(best, iou.max(dim=1).values)
    return max_iou.to(anchors.dtype), argmax, best.to(anchors.dtype)


def low_quality_matches(anchors: Tensor, gt_boxes: Tensor, best_anchor_iou_per_gt: Tensor) -> Tensor:
    """``(N,)`` bool: anchors whose IoU with some gt equals that gt's best IoU, when that is > 0.

    The IoU is compared after rounding to the boxes' dtype, where ``best_anchor_iou_per_gt`` lives.
    """
    check_same_device("low_quality_matches", anchors=anchors, gt_boxes=gt_boxes)
    check_boxes("low_quality_matches", "anchors", anchors)
    check_boxes("low_quality_matches", "gt_boxes", gt_boxes)
    _check_same("low_quality_matches", "anchors", anchors, "gt_boxes", gt_boxes)
    best = best_anchor_iou_per_gt
    _check_same("low_quality_matches", "anchors", anchors, "best_anchor_iou_per_gt", best)
    if best.shape != (gt_boxes.shape[0],):
        raise ValueError(
            f"low_quality_matches: best_anchor_iou_per_gt must have shape ({gt_boxes.shape[0]},) to "
            f"match gt_boxes; got {list(best.shape)}."
        )
    n, m = anchors.shape[0], gt_boxes.shape[0]
    flags = torch.zeros(n, dtype=torch.bool, device=anchors.device)
    if n and m:
        dtype = _compute_dtype(anchors)
        gt = gt_boxes.to(dtype)
        target = best[:, None]
        for start, end in _anchor_chunks(n, m):
            iou = pairwise_iou(gt, anchors[start:end].to(dtype)).to(anchors.dtype)
            flags[start:end] = ((iou == target) & (target > 0)).any(dim=0)
    return flags


def _check_nms_args(op: str, boxes: Tensor, scores: Tensor, iou_threshold: float) -> None:
    check_boxes(op, "boxes", boxes)
    if not isinstance(scores, Tensor) or scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        got = list(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"{op}: scores must have shape ({boxes.shape[0]},) to match boxes; got {got}.")
    if scores.device != boxes.device:
        raise ValueError(f"{op}: scores are on {scores.device} but boxes on {boxes.device}.")
    if not scores.is_floating_point():
        raise ValueError(f"{op}: scores must be a floating tensor; got dtype {scores.dtype}.")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"{op}: iou_threshold must be in [0, 1]; got {iou_threshold}.")
    if scores.numel() and bool(torch.isnan(scores).any()):
        raise ValueError(f"{op}: scores contain NaN.")


def _nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """torchvision's NMS in the compute dtype; scores of another dtype are ranked as given."""
    dets = boxes.to(_compute_dtype(boxes))
    if scores.dtype == dets.dtype:
        return torchvision.ops.nms(dets, scores, iou_threshold)
    order = scores.sort(stable=True, descending=True).indices
    rank = torch.arange(len(order), 0, -1, dtype=dets.dtype, device=dets.device)
    return order[torchvision.ops.nms(dets[order], rank, iou_threshold)]


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS of ``boxes (N, 4)`` xyxy by ``scores (N,)``: int64 indices kept, by decreasing score."""
    _check_nms_args("nms", boxes, scores, iou_threshold)
    return _nms(boxes, scores, float(iou_threshold))


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category ``idxs (N,)``: int64 indices kept, by decreasing score.

    The results of torchvision's per-category path (``_batched_nms_vanilla``), whatever N is.
    """
    _check_nms_args("batched_nms", boxes, scores, iou_threshold)
    if not isinstance(idxs, Tensor) or idxs.dim() != 1 or idxs.shape[0] != boxes.shape[0]:
        got = list(idxs.shape) if isinstance(idxs, Tensor) else type(idxs).__name__
        raise ValueError(f"batched_nms: idxs must have shape ({boxes.shape[0]},) to match boxes; got {got}.")
    if idxs.is_floating_point() or idxs.dtype == torch.bool or idxs.is_complex():
        raise ValueError(f"batched_nms: idxs must be an integer tensor of category ids; got dtype {idxs.dtype}.")
    if idxs.device != boxes.device:
        raise ValueError(f"batched_nms: idxs are on {idxs.device} but boxes on {boxes.device}.")
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for category in torch.unique(idxs):
        members = torch.where(idxs == category)[0]
        keep_mask[members[_nms(boxes[members], scores[members], float(iou_threshold))]] = True
    kept = torch.where(keep_mask)[0]
    return kept[scores[kept].sort(descending=True)[1]]

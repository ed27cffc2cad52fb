"""Class-aware NMS for a traced (exported) graph, with the per-class results of ``ops.batched_nms``.

torchvision's traced ``batched_nms`` shifts each class's boxes by ``class id x (largest coordinate +
1)``. With 80 classes that is up to 1e5 px, where float32 keeps about 0.01 px, so IoUs near the
threshold change and some boxes are kept or dropped differently from the eager model. Here no box
moves:

- TorchScript: a scripted function loops over the classes and runs torchvision's ``nms`` on each,
  exactly as the eager fallback does; the trace calls it, so the loop stays in the graph.
- ONNX: the multi-class form of ``NonMaxSuppression``, whose classes are a dimension of the score
  tensor: class c's row holds its own boxes' scores and -1 (below the score threshold) elsewhere.

``traced_nms_format(fmt)`` sets which one tracing records; the exporter sets it around its trace. Other
tracing (fvcore's FLOP count) keeps the compiled ops.
"""
import contextlib
import functools
import sys
import warnings
from typing import Iterator

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision.nms, which the scripted function calls)
from torch import Tensor

__all__ = ["export_format", "exporting", "traced_batched_nms", "traced_nms_format"]

_FORMAT = {"value": None}
# Scores of the other classes' boxes in the ONNX score matrix, and the threshold that drops them: every
# real score (a probability, >= 0) is above it.
_ABSENT_SCORE = -1.0
_SCORE_THRESHOLD = -0.5


def export_format():
    """The format an export is tracing for ("torchscript" or "onnx"), or None outside an export."""
    return _FORMAT["value"] if torch.jit.is_tracing() else None


def exporting() -> bool:
    """True while an export traces the model (inside :func:`traced_nms_format`)."""
    return torch.jit.is_tracing() and _FORMAT["value"] is not None


@contextlib.contextmanager
def traced_nms_format(fmt: str) -> Iterator[None]:
    """While active, traced class-aware NMS is recorded for ``fmt`` ("torchscript" or "onnx")."""
    if fmt not in ("torchscript", "onnx"):
        raise ValueError(f"traced_nms_format: format {fmt!r} is not 'torchscript' or 'onnx'.")
    previous = _FORMAT["value"]
    _FORMAT["value"] = fmt
    try:
        yield
    finally:
        _FORMAT["value"] = previous


def _per_class_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """torchvision's NMS within each class of ``idxs``; kept indices by decreasing score."""
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for category in torch.unique(idxs):
        members = torch.where(idxs == category)[0]
        kept = torch.ops.torchvision.nms(boxes[members], scores[members], iou_threshold)
        keep_mask[members[kept]] = True
    kept = torch.where(keep_mask)[0]
    return kept[scores[kept].sort(descending=True)[1]]


class _MultiClassNMS(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` of boxes (1, N, 4) under scores (1, C, N) -> selected (M, 3) int64
    rows (batch, class, box). ``forward`` gives the same rows eagerly (used while tracing)."""

    @staticmethod
    def forward(ctx, boxes: Tensor, score_matrix: Tensor, iou_threshold: float) -> Tensor:
        rows = []
        for category in range(int(score_matrix.shape[1])):
            members = torch.where(score_matrix[0, category] > _SCORE_THRESHOLD)[0]
            kept = members[torch.ops.torchvision.nms(boxes[0, members], score_matrix[0, category, members],
                                                     iou_threshold)]
            rows.append(torch.stack([torch.zeros_like(kept), torch.full_like(kept, category), kept], dim=1))
        return torch.cat(rows) if rows else torch.zeros((0, 3), dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, score_matrix, iou_threshold):
        max_per_class = g.op("Constant", value_t=torch.tensor([sys.maxsize], dtype=torch.int64))
        threshold = g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32))
        score_threshold = g.op("Constant", value_t=torch.tensor([_SCORE_THRESHOLD], dtype=torch.float32))
        return g.op("NonMaxSuppression", boxes, score_matrix, max_per_class, threshold, score_threshold)


def _onnx_batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    boxes, scores = boxes.to(torch.float32), scores.to(torch.float32)
    num_classes = torch.cat([idxs.to(torch.int64), idxs.new_full((1,), -1, dtype=torch.int64)]).max() + 1
    classes = torch.arange(num_classes, dtype=torch.int64, device=idxs.device)
    member = classes[:, None] == idxs.to(torch.int64)[None, :]
    score_matrix = torch.where(member, scores[None, :], torch.full_like(scores, _ABSENT_SCORE)[None, :])
    selected = _MultiClassNMS.apply(boxes[None], score_matrix[None], float(iou_threshold))
    kept = selected[:, 2]
    order = torch.topk(scores[kept], kept.shape[0], sorted=True).indices
    return kept[order]


def traced_batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """``ops.batched_nms`` while tracing: indices kept, by decreasing score; see the module docstring."""
    if _FORMAT["value"] == "onnx":
        return _onnx_batched_nms(boxes, scores, idxs, iou_threshold)
    return _scripted_per_class_nms()(boxes, scores, idxs, float(iou_threshold))


@functools.lru_cache(maxsize=None)
def _scripted_per_class_nms():
    """``_per_class_nms`` scripted, on first use (scripting costs time and warns on torch >= 2.14)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's deprecation notice
        return torch.jit.script(_per_class_nms)

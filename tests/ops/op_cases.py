"""Shared inputs of the box-op tests: the two implementations, hypothesis strategies and references."""
import math
from types import SimpleNamespace
from typing import List, Sequence

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from torch import Tensor
from torchvision.ops.boxes import _batched_nms_vanilla

from retinadet import ops
from retinadet.ops import fallback
from retinadet.utils.testing import clustered_boxes, random_boxes  # noqa: F401  (part of the cases)

__all__ = [
    "DTYPES", "REDUCED_DTYPES", "PATHS", "OP_NAMES", "EXAMPLES", "OFFSETS", "implementation", "has_kernel",
    "box_rows", "scores_for", "thresholds", "as_boxes", "tv_box_iou", "dense_match_reference",
    "batched_nms_reference", "random_boxes", "clustered_boxes", "raises_naming", "bad_argument_test",
]

DTYPES = (torch.float32, torch.float64)
REDUCED_DTYPES = (torch.float16, torch.bfloat16)
PATHS = ("compiled", "fallback")
OP_NAMES = ("box_iou", "batched_box_iou", "match_max_iou", "low_quality_matches", "nms", "batched_nms")
# Few examples per test, each small: the whole ops suite stays well under a minute on 2 cores.
EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Common shifts of a whole box set: 1e7 is where float32 coordinates are spaced by 1.
OFFSETS = (0.0, 1e6, 1e7)


def implementation(path: str, device: str = "cpu") -> SimpleNamespace:
    """The six ops of one path: "compiled" (``torch.ops.retinadet``) or "fallback" (pure PyTorch).

    Skips the calling test when the compiled path is asked for and retinadet._C is not in use, or
    has no kernel for ``device``.
    """
    if path == "fallback":
        return SimpleNamespace(**{name: getattr(fallback, name) for name in OP_NAMES})
    if not ops.extension_loaded():
        pytest.skip(f"compiled ops not in use: {ops.extension_load_error()}")
    missing = [name for name in OP_NAMES if not has_kernel(name, device)]
    if missing:
        pytest.skip(f"retinadet._C was built without {device} kernels for {missing}")
    return SimpleNamespace(**{name: getattr(torch.ops.retinadet, name) for name in OP_NAMES})


def has_kernel(op: str, device: str) -> bool:
    """Whether ``torch.ops.retinadet.<op>`` runs on ``device`` ("cpu" or "cuda"): a kernel of its
    own there, or one defined once for every backend in terms of other ops."""
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return has(f"retinadet::{op}", device.upper()) or has(f"retinadet::{op}", "CompositeImplicitAutograd")


# Coordinates on a coarse integer grid give exact ties (equal IoUs, IoU exactly at a threshold,
# touching edges); float32-representable reals give general positions.
_COORD = st.one_of(st.integers(0, 24).map(float), st.floats(0, 100, width=32))
_SIZE = st.one_of(st.integers(1, 12).map(float), st.floats(0, 60, width=32))
_KINDS = ("random", "random", "copy", "nested", "point", "line", "inverted")


@st.composite
def box_rows(draw, min_n: int = 0, max_n: int = 12, kinds: Sequence[str] = _KINDS) -> List[List[float]]:
    """(N, 4) xyxy rows: random boxes mixed with exact copies of earlier rows, boxes nested inside
    earlier rows, zero-area points and lines, and inverted boxes (x2 < x1 or y2 < y1)."""
    n = draw(st.integers(min_n, max_n))
    rows: List[List[float]] = []
    for _ in range(n):
        kind = draw(st.sampled_from(kinds)) if rows else "random"
        if kind in ("copy", "nested"):
            x1, y1, x2, y2 = rows[draw(st.integers(0, len(rows) - 1))]
            if kind == "nested":
                # Shrink each side by an eighth-step fraction of the width / height.
                f = [draw(st.integers(0, 3)) / 8.0 for _ in range(4)]
                w, h = x2 - x1, y2 - y1
                x1, y1, x2, y2 = x1 + f[0] * w, y1 + f[1] * h, x2 - f[2] * w, y2 - f[3] * h
            rows.append([x1, y1, x2, y2])
            continue
        x, y = draw(_COORD), draw(_COORD)
        w, h = draw(_SIZE), draw(_SIZE)
        if kind == "point":
            w = h = 0.0
        elif kind == "line":
            w, h = (0.0, h) if draw(st.booleans()) else (w, 0.0)
        elif kind == "inverted":
            w, h = (-w, h) if draw(st.booleans()) else (-w, -h)
        rows.append([x, y, x + w, y + h])
    return rows


def scores_for(n: int):
    """Strategy for ``n`` scores: a few repeated values (ties, 0.0 with -0.0), reals, and +-inf."""
    value = st.one_of(st.sampled_from([0.1, 0.3, 0.5, 0.9, 0.0, -0.0]), st.floats(0, 1, width=32),
                      st.sampled_from([math.inf, -math.inf]))
    return st.lists(value, min_size=n, max_size=n)


# The usual thresholds, the extremes, and any value in [0, 1].
thresholds = st.one_of(st.sampled_from([0.0, 1 / 3, 0.5, 0.7, 1.0]), st.floats(0, 1))


def as_boxes(rows, dtype: torch.dtype, offset: float = 0.0, device: str = "cpu") -> Tensor:
    """``rows`` shifted by ``offset`` (added in float64, then rounded once to ``dtype``) as (N, 4)."""
    boxes = torch.tensor(rows, dtype=torch.float64).reshape(-1, 4) + offset
    return boxes.to(dtype=dtype, device=device)


def tv_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """torchvision's box_iou with its 0 / 0 (two zero-area boxes) replaced by 0, as the ops define.

    Everywhere else (including the -0.0 it gives for some inverted boxes, equal to 0) it is the
    value the ops must reproduce bit for bit.
    """
    return torch.nan_to_num(torchvision.ops.box_iou(boxes1, boxes2), nan=0.0)


def dense_match_reference(anchors: Tensor, gt_boxes: Tensor):
    """What match_max_iou and low_quality_matches must return, from the full (M, N) IoU matrix.

    Returns ``(max_iou, argmax, best_per_gt, low_quality)``; ``torch.max`` returns the first index
    of a maximum, so ties across gts go to the first gt.
    """
    n, m = anchors.shape[0], gt_boxes.shape[0]
    iou = tv_box_iou(gt_boxes, anchors)  # (M, N)
    if n == 0 or m == 0:
        return (anchors.new_zeros(n), anchors.new_zeros(n, dtype=torch.int64), anchors.new_zeros(m),
                anchors.new_zeros(n, dtype=torch.bool))
    max_iou, argmax = iou.max(dim=0)
    best = iou.max(dim=1, keepdim=True).values
    low_quality = ((iou == best) & (best > 0)).any(dim=0)
    return max_iou, argmax, best.squeeze(1), low_quality


def batched_nms_reference(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """torchvision's per-category batched NMS (what its batched_nms runs on CPU for N > 1000)."""
    return _batched_nms_vanilla(boxes, scores, idxs, iou_threshold)


def raises_naming(name: str):
    """``pytest.raises(ValueError)`` whose message names ``name`` as a whole word."""
    return pytest.raises(ValueError, match=rf"(?<![\w]){name}(?![\w])")


def bad_argument_test(cases):
    """A test, parametrized over both PATHS and ``cases`` (``(id, call, name)``: ``call(ops)`` must raise
    a ValueError naming ``name``), for a test module to bind to a ``test_...`` name."""

    @pytest.mark.parametrize("path", PATHS)
    @pytest.mark.parametrize("call, name", [c[1:] for c in cases], ids=[c[0] for c in cases])
    def test(path, call, name):
        with raises_naming(name):
            call(implementation(path))

    return test

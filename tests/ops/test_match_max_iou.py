"""match_max_iou and low_quality_matches, compiled and fallback: equal to the dense IoU matrix's answers."""
from functools import lru_cache

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from retinadet import ops
from retinadet.modeling.anchor_generators import DefaultAnchorGenerator
from retinadet.modeling.matchers import iou_matcher
from retinadet.modeling.matchers.iou_matcher import IoUMatcher
from tests.ops.op_cases import (
    bad_argument_test, DTYPES, EXAMPLES, OFFSETS, PATHS, REDUCED_DTYPES, as_boxes, box_rows, dense_match_reference,
    implementation, raises_naming, random_boxes,
)


def _check_match(impl, anchors, gt_boxes):
    """Assert both ops equal the dense reference; returns the reference."""
    max_iou, argmax, best = impl.match_max_iou(anchors, gt_boxes)
    ref_max, ref_arg, ref_best, ref_low = dense_match_reference(anchors, gt_boxes)
    n, m = anchors.shape[0], gt_boxes.shape[0]
    assert max_iou.shape == (n,) and argmax.shape == (n,) and best.shape == (m,)
    assert max_iou.dtype == best.dtype == anchors.dtype and argmax.dtype == torch.int64
    assert torch.equal(max_iou, ref_max)
    assert torch.equal(argmax, ref_arg)
    assert torch.equal(best, ref_best)
    low = impl.low_quality_matches(anchors, gt_boxes, best)
    assert low.dtype == torch.bool and low.shape == (n,)
    assert torch.equal(low, ref_low)
    return ref_max, ref_arg, ref_best, ref_low


@pytest.mark.parametrize("path", PATHS)
@EXAMPLES
@given(anchors=box_rows(max_n=30), gt=box_rows(max_n=10), offset=st.sampled_from(OFFSETS),
       dtype=st.sampled_from(DTYPES), gt_from_anchors=st.booleans())
def test_match_equals_dense_iou_matrix(path, anchors, gt, offset, dtype, gt_from_anchors):
    if gt_from_anchors:
        # Exact copies of anchors among the gts: IoU exactly 1 and ties across gts.
        gt = gt + anchors[::3]
    _check_match(implementation(path), as_boxes(anchors, dtype, offset), as_boxes(gt, dtype, offset))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_many_anchors_in_random_order(path, dtype, seed):
    # Several blocks of anchors (the compiled CPU kernel skips gts per block of 64), in no spatial
    # order, with duplicate gts and gts copied from anchors so ties abound.
    generator = torch.Generator().manual_seed(seed)
    anchors = torch.round(random_boxes(generator, 700, extent=300.0, max_size=80.0, dtype=dtype))
    gt = torch.round(random_boxes(generator, 40, extent=300.0, max_size=120.0, dtype=dtype))
    gt = torch.cat([gt, gt[:5], anchors[torch.randint(700, (10,), generator=generator)]])
    ref_max, _, ref_best, ref_low = _check_match(implementation(path), anchors, gt)
    assert (ref_max == 1).any() and (ref_best > 0).sum() >= 40 and ref_low.sum() >= 15


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_ties_across_gts_go_to_the_first(path, dtype):
    impl = implementation(path)
    anchors = torch.tensor([[0, 0, 10, 10], [100, 100, 110, 110]], dtype=dtype)
    # Both gts overlap anchor 0 by 50 with union 150 (IoU 1/3); the second anchor overlaps nothing.
    left, right = [-5, 0, 5, 10], [5, 0, 15, 10]
    for gt in ([left, right], [right, left], [left, left]):
        max_iou, argmax, best = impl.match_max_iou(anchors, torch.tensor(gt, dtype=dtype))
        third = torch.tensor(50.0, dtype=dtype) / 150
        assert torch.equal(max_iou, torch.stack([third, torch.zeros((), dtype=dtype)]))
        assert argmax.tolist() == [0, 0]
        assert torch.equal(best, torch.stack([third, third]))
    # A later gt with a strictly higher IoU wins.
    gt = torch.tensor([left, [0, 0, 10, 9]], dtype=dtype)
    max_iou, argmax, _ = impl.match_max_iou(anchors, gt)
    assert argmax.tolist() == [1, 0] and max_iou[0].item() == pytest.approx(0.9)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_low_quality_matches_hand_case(path, dtype):
    impl = implementation(path)
    anchors = torch.tensor(
        [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 20, 20], [50, 50, 60, 60], [30, 30, 30, 30]], dtype=dtype
    )
    gt = torch.tensor([[0, 0, 5, 5], [200, 200, 210, 210], [52, 52, 52, 52]], dtype=dtype)
    # gt 0 is best matched (25 / 100) by anchors 0 and 1 equally: both flagged. gt 1 overlaps
    # nothing and gt 2 has no area: their best IoU is 0 and they flag nothing.
    max_iou, argmax, best = impl.match_max_iou(anchors, gt)
    assert best.tolist() == [0.25, 0.0, 0.0]
    assert impl.low_quality_matches(anchors, gt, best).tolist() == [True, True, False, False, False]
    # Anchor 2 contains gt 0: 25 / 400. Anchors 3 and 4 overlap nothing.
    inter = torch.tensor([25, 25, 25, 0, 0], dtype=dtype)
    assert torch.equal(max_iou, inter / torch.tensor([100, 100, 400, 1, 1], dtype=dtype))
    assert argmax.tolist() == [0, 0, 0, 0, 0]
    # The flags follow the given best IoUs, whatever they are.
    other = torch.tensor([25 / 400, 0.0, 0.0], dtype=dtype)
    assert impl.low_quality_matches(anchors, gt, other).tolist() == [False, False, True, False, False]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_empty_inputs(path, dtype):
    impl = implementation(path)
    anchors = torch.tensor([[0, 0, 4, 4], [1, 1, 3, 3]], dtype=dtype)
    # No gt: max IoU 0 and index 0 for every anchor, nothing flagged.
    max_iou, argmax, best = impl.match_max_iou(anchors, anchors[:0])
    assert torch.equal(max_iou, torch.zeros(2, dtype=dtype)) and argmax.tolist() == [0, 0]
    assert best.shape == (0,) and best.dtype == dtype
    assert impl.low_quality_matches(anchors, anchors[:0], best).tolist() == [False, False]
    # No anchors: every gt's best IoU is 0.
    max_iou, argmax, best = impl.match_max_iou(anchors[:0], anchors)
    assert max_iou.shape == argmax.shape == (0,) and argmax.dtype == torch.int64
    assert torch.equal(best, torch.zeros(2, dtype=dtype))
    assert impl.low_quality_matches(anchors[:0], anchors, best).shape == (0,)
    max_iou, argmax, best = impl.match_max_iou(anchors[:0], anchors[:0])
    assert max_iou.shape == argmax.shape == best.shape == (0,)


@pytest.mark.parametrize("path", PATHS)
def test_non_contiguous_inputs(path):
    impl = implementation(path)
    generator = torch.Generator().manual_seed(3)
    anchors = random_boxes(generator, 200, extent=200.0).repeat_interleave(2, dim=1)[:, ::2]
    gt = random_boxes(generator, 20, extent=200.0, max_size=80.0).t().contiguous().t()
    assert not anchors.is_contiguous() and not gt.is_contiguous()
    _check_match(impl, anchors, gt)


# ---------------------------------------------------------------------------- a realistic image


@lru_cache(maxsize=None)
def _realistic_case(dtype: torch.dtype):
    """RetinaNet's anchors (P3-P7, 9 per cell) for a 512 x 512 image and 300 gt boxes."""
    generator = DefaultAnchorGenerator(strides=[8, 16, 32, 64, 128], sizes=[32, 64, 128, 256, 512])
    features = [torch.empty(1, 1, 512 // s, 512 // s) for s in (8, 16, 32, 64, 128)]
    anchors = torch.cat(generator(features, (512, 512))).to(dtype)
    g = torch.Generator().manual_seed(13)
    xy = torch.rand(260, 2, generator=g, dtype=torch.float64) * 480
    wh = torch.rand(260, 2, generator=g, dtype=torch.float64) * 250 + 2
    gt = torch.cat([xy, torch.clamp(xy + wh, max=512)], dim=1).to(dtype)
    extra = [
        anchors[torch.randint(len(anchors), (24,), generator=g)],  # IoU exactly 1 with an anchor
        gt[:6],  # duplicate gts: ties across gts
        torch.tensor([[100.0, 100.0, 100.0, 100.0]] * 4, dtype=dtype),  # zero-area gts
        torch.tensor([[2000.0, 2000.0, 2100.0, 2100.0]] * 6, dtype=dtype),  # far outside the image
    ]
    gt = torch.cat([gt] + extra)
    return anchors, gt, dense_match_reference(anchors, gt)


@pytest.mark.parametrize("path", PATHS)
def test_realistic_image(path):
    # float32, the dtype training runs in (float64 is covered above on smaller inputs).
    anchors, gt, (ref_max, ref_arg, ref_best, ref_low) = _realistic_case(torch.float32)
    assert anchors.shape == (9 * (64 ** 2 + 32 ** 2 + 16 ** 2 + 8 ** 2 + 4 ** 2), 4) and gt.shape == (300, 4)
    impl = implementation(path)
    max_iou, argmax, best = impl.match_max_iou(anchors, gt)
    assert torch.equal(max_iou, ref_max)
    assert torch.equal(argmax, ref_arg)
    assert torch.equal(best, ref_best)
    assert torch.equal(impl.low_quality_matches(anchors, gt, best), ref_low)
    # The case covers what it means to: positives, ties at 1, gts with no overlap.
    assert (ref_max >= 0.5).sum() > 100 and (ref_max == 1).sum() >= 24
    assert (ref_best == 0).sum() == 10 and ref_low.sum() > 250


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("allow_low_quality", [True, False])
def test_iou_matcher_forward_equals_matching_the_iou_matrix(path, allow_low_quality, monkeypatch):
    impl = implementation(path)
    # The matcher calls the ops it imported; point them at the path under test.
    monkeypatch.setattr(iou_matcher, "match_max_iou", impl.match_max_iou)
    monkeypatch.setattr(iou_matcher, "low_quality_matches", impl.low_quality_matches)
    anchors, gt, _ = _realistic_case(torch.float32)
    matcher = IoUMatcher((0.4, 0.5), allow_low_quality_matches=allow_low_quality)
    matched_idxs, labels = matcher(gt, anchors)
    expected_idxs, expected_labels = matcher.match_iou_matrix(ops.box_iou(gt, anchors))
    assert torch.equal(matched_idxs, expected_idxs)
    assert torch.equal(labels, expected_labels)
    assert (labels == iou_matcher.POSITIVE).sum() > 100 and (labels == iou_matcher.IGNORE).any()


# ---------------------------------------------------------------------------- argument checks

A = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 3.0, 3.0]])
G = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
BEST = torch.tensor([0.25])


def _nan(boxes):
    boxes = boxes.clone()
    boxes[0, 1] = float("nan")
    return boxes


BAD_MATCH_ARGUMENTS = [
    ("rank-1 anchors", lambda f: f.match_max_iou(A.flatten(), G), "anchors"),
    ("rank-3 gt", lambda f: f.match_max_iou(A, G[None]), "gt_boxes"),
    ("last dim 5", lambda f: f.match_max_iou(torch.zeros(2, 5), G), "anchors"),
    ("gt last dim 3", lambda f: f.match_max_iou(A, G[:, :3]), "gt_boxes"),
    ("dtype mismatch", lambda f: f.match_max_iou(A, G.double()), "anchors and gt_boxes"),
    ("int anchors", lambda f: f.match_max_iou(A.long(), G), "anchors"),
    ("nan anchors", lambda f: f.match_max_iou(_nan(A), G), "anchors"),
    ("inf gt", lambda f: f.match_max_iou(A, G + float("inf")), "gt_boxes"),
    ("low rank-1 anchors", lambda f: f.low_quality_matches(A.flatten(), G, BEST), "anchors"),
    ("low gt last dim", lambda f: f.low_quality_matches(A, G[:, :3], BEST), "gt_boxes"),
    ("low nan gt", lambda f: f.low_quality_matches(A, _nan(G), BEST), "gt_boxes"),
    ("low dtype", lambda f: f.low_quality_matches(A.double(), G, BEST), "anchors and gt_boxes"),
    ("best length", lambda f: f.low_quality_matches(A, G, torch.zeros(2)), "best_anchor_iou_per_gt"),
    ("best rank", lambda f: f.low_quality_matches(A, G, BEST[None]), "best_anchor_iou_per_gt"),
    ("best dtype", lambda f: f.low_quality_matches(A, G, BEST.double()), "best_anchor_iou_per_gt"),
]


test_bad_arguments_raise_value_error_naming_them = bad_argument_test(BAD_MATCH_ARGUMENTS)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", REDUCED_DTYPES, ids=str)
def test_reduced_precision_is_refused_on_cpu(path, dtype):
    impl = implementation(path)
    with raises_naming("anchors"):
        impl.match_max_iou(A.to(dtype), G.to(dtype))
    with raises_naming("anchors"):
        impl.low_quality_matches(A.to(dtype), G.to(dtype), BEST.to(dtype))


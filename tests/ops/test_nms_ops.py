"""nms and batched_nms, compiled and fallback: torchvision's indices in torchvision's order, ties included."""
import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st

from retinadet import ops
from retinadet.ops import fallback
from tests.ops.op_cases import (
    bad_argument_test, DTYPES, EXAMPLES, OFFSETS, PATHS, REDUCED_DTYPES, as_boxes, batched_nms_reference, box_rows,
    clustered_boxes, implementation, raises_naming, random_boxes, scores_for, thresholds,
)


@st.composite
def nms_cases(draw, max_n=40):
    """(boxes rows, scores, category ids, threshold, offset)."""
    rows = draw(box_rows(max_n=max_n))
    scores = draw(scores_for(len(rows)))
    idxs = draw(st.lists(st.integers(0, 3), min_size=len(rows), max_size=len(rows)))
    return rows, scores, idxs, draw(thresholds), draw(st.sampled_from(OFFSETS))


def _check_keep(keep, scores):
    assert keep.dtype == torch.int64 and keep.dim() == 1
    assert len(set(keep.tolist())) == len(keep)
    # Kept boxes come by decreasing score.
    assert (scores[keep][:-1] >= scores[keep][1:]).all()


# ---------------------------------------------------------------------------- random and adversarial


@pytest.mark.parametrize("path", PATHS)
@EXAMPLES
@given(case=nms_cases(), dtype=st.sampled_from(DTYPES))
def test_nms_equals_torchvision(path, case, dtype):
    rows, scores, _, threshold, offset = case
    boxes, scores = as_boxes(rows, dtype, offset), torch.tensor(scores, dtype=dtype)
    keep = implementation(path).nms(boxes, scores, threshold)
    _check_keep(keep, scores)
    assert torch.equal(keep, torchvision.ops.nms(boxes, scores, threshold))
    assert torch.equal(keep, fallback.nms(boxes, scores, threshold))


@pytest.mark.parametrize("path", PATHS)
@EXAMPLES
@given(case=nms_cases(), dtype=st.sampled_from(DTYPES), idx_dtype=st.sampled_from([torch.int64, torch.int32]))
def test_batched_nms_equals_torchvision_per_category(path, case, dtype, idx_dtype):
    rows, scores, idxs, threshold, offset = case
    boxes, scores = as_boxes(rows, dtype, offset), torch.tensor(scores, dtype=dtype)
    idxs = torch.tensor(idxs, dtype=idx_dtype)
    keep = implementation(path).batched_nms(boxes, scores, idxs, threshold)
    _check_keep(keep, scores)
    assert torch.equal(keep, batched_nms_reference(boxes, scores, idxs, threshold))
    assert torch.equal(keep, fallback.batched_nms(boxes, scores, idxs, threshold))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", [0, 1])
def test_large_inputs_equal_torchvision(path, dtype, seed):
    # Dense clusters on a 1/4-pixel grid: most boxes are suppressed (the compiled CPU loop compacts
    # its candidates then) and many IoUs and scores tie exactly.
    generator = torch.Generator().manual_seed(seed)
    n = 2500
    boxes = clustered_boxes(generator, n, clusters=40, dtype=dtype)
    scores = (torch.randint(0, 50, (n,), generator=generator) / 50).to(dtype)
    idxs = torch.randint(0, 6, (n,), generator=generator)
    impl = implementation(path)
    for threshold in (0.3, 0.7):
        keep = impl.nms(boxes, scores, threshold)
        assert torch.equal(keep, torchvision.ops.nms(boxes, scores, threshold))
        assert 40 <= len(keep) < n // 2
        keep = impl.batched_nms(boxes, scores, idxs, threshold)
        # N > 1000: torchvision's batched_nms itself runs per category on the CPU.
        assert torch.equal(keep, torchvision.ops.batched_nms(boxes, scores, idxs, threshold))
        assert torch.equal(keep, batched_nms_reference(boxes, scores, idxs, threshold))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_identical_boxes_and_scores(path, dtype):
    impl = implementation(path)
    n = 40  # enough for the sort to be a real (multi-block) sort
    boxes = torch.tensor([[2.0, 3.0, 12.0, 9.0]], dtype=dtype).repeat(n, 1)
    scores = torch.full((n,), 0.5, dtype=dtype)
    # IoU 1 > 0.5: the first box (ties go by index) suppresses all others.
    assert impl.nms(boxes, scores, 0.5).tolist() == [0]
    assert torch.equal(impl.nms(boxes, scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5))
    # IoU 1 is not > 1: all are kept, ties in index order.
    assert impl.nms(boxes, scores, 1.0).tolist() == list(range(n))
    assert torch.equal(impl.nms(boxes, scores, 1.0), torchvision.ops.nms(boxes, scores, 1.0))
    # Per category: the first box of each category survives.
    idxs = torch.arange(n) % 3
    keep = impl.batched_nms(boxes, scores, idxs, 0.5)
    assert sorted(keep.tolist()) == [0, 1, 2]
    assert torch.equal(keep, batched_nms_reference(boxes, scores, idxs, 0.5))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_tied_scores_hand_case(path, dtype):
    impl = implementation(path)
    boxes = torch.tensor(
        [[20, 20, 30, 30], [0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [40, 40, 50, 50]], dtype=dtype
    )
    scores = torch.tensor([0.9, 0.9, 0.9, 0.95, 0.9], dtype=dtype)
    # Box 3 (highest) removes its duplicate 1 (IoU 1) and box 2 (IoU 90 / 110); the 0.9 ties that
    # remain (0 and 4) follow in index order.
    assert impl.nms(boxes, scores, 0.5).tolist() == [3, 0, 4]
    assert torch.equal(impl.nms(boxes, scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5))
    # Without box 3: box 1 comes first among the ties and removes box 2.
    assert impl.nms(boxes[:3], scores[:3], 0.5).tolist() == [0, 1]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_iou_exactly_at_the_threshold_is_kept(path, dtype):
    impl = implementation(path)
    # inter 2 x 1, union 3 + 3 - 2 = 4: IoU exactly 0.5, which is not > 0.5.
    boxes = torch.tensor([[0.0, 0.0, 3.0, 1.0], [1.0, 0.0, 4.0, 1.0]], dtype=dtype)
    scores = torch.tensor([0.9, 0.8], dtype=dtype)
    assert impl.nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert impl.nms(boxes, scores, 0.49).tolist() == [0]
    # inter 1, union 5: IoU 0.2 in the dtype; a float32 0.2 lies above the float64 0.2.
    boxes = torch.tensor([[0.0, 0.0, 3.0, 1.0], [2.0, 0.0, 5.0, 1.0]], dtype=dtype)
    for threshold in (0.2, 0.19999, 0.20001, 0.0, 1.0):
        assert torch.equal(impl.nms(boxes, scores, threshold), torchvision.ops.nms(boxes, scores, threshold))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_zero_area_and_inverted_boxes_never_suppress(path, dtype):
    impl = implementation(path)
    boxes = torch.tensor(
        [[5, 5, 5, 5], [5, 5, 5, 5], [0, 5, 10, 5], [10, 0, 0, 10], [10, 10, 0, 0], [0, 0, 10, 10],
         [10, 0, 20, 10]],
        dtype=dtype,
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3], dtype=dtype)
    # Every pair has IoU 0 (no area, inverted, or only an edge in common), not > 0.
    assert impl.nms(boxes, scores, 0.0).tolist() == list(range(7))
    assert torch.equal(impl.nms(boxes, scores, 0.0), torchvision.ops.nms(boxes, scores, 0.0))
    idxs = torch.zeros(7, dtype=torch.int64)
    assert impl.batched_nms(boxes, scores, idxs, 0.0).tolist() == list(range(7))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("offset", [1e6, 1e7])
def test_huge_coordinates(path, dtype, offset):
    impl = implementation(path)
    generator = torch.Generator().manual_seed(8)
    n = 300
    # Integer boxes: exact in float32 and float64 up to 2**24, so the shift changes no IoU.
    small = torch.round(clustered_boxes(generator, n, clusters=10, dtype=torch.float64))
    small[:, 2:] = torch.maximum(small[:, 2:], small[:, :2] + 1)
    shifted = (small + offset).to(dtype)
    scores = (torch.randint(0, 20, (n,), generator=generator) / 20).to(dtype)
    idxs = torch.randint(0, 3, (n,), generator=generator)
    keep = impl.nms(shifted, scores, 0.5)
    assert torch.equal(keep, torchvision.ops.nms(shifted, scores, 0.5))
    assert torch.equal(keep, impl.nms(small.to(dtype), scores, 0.5))
    keep = impl.batched_nms(shifted, scores, idxs, 0.5)
    assert torch.equal(keep, batched_nms_reference(shifted, scores, idxs, 0.5))
    assert torch.equal(keep, impl.batched_nms(small.to(dtype), scores, idxs, 0.5))
    # Non-integer boxes at the offset round differently per dtype; torchvision still agrees.
    rough = (random_boxes(generator, n, extent=200.0, dtype=torch.float64) + offset).to(dtype)
    assert torch.equal(impl.nms(rough, scores, 0.5), torchvision.ops.nms(rough, scores, 0.5))


@pytest.mark.parametrize("path", PATHS)
def test_category_ids_of_any_integer_type_and_sign(path):
    impl = implementation(path)
    generator = torch.Generator().manual_seed(9)
    n = 200
    boxes = clustered_boxes(generator, n, clusters=8)
    scores = (torch.randint(0, 10, (n,), generator=generator) / 10).float()
    base = torch.randint(0, 4, (n,), generator=generator)
    expected = batched_nms_reference(boxes, scores, base, 0.5)
    # Only which boxes share a category matters, not the ids' values or integer type.
    for idxs in (base.int(), base.to(torch.uint8), base.to(torch.int16), base - 2, base * 10**12):
        assert torch.equal(impl.batched_nms(boxes, scores, idxs, 0.5), expected)
    # One category for all keeps what plain NMS keeps (the final sort by score is torchvision's
    # unstable one, so tied scores may come in another order than nms gives them).
    keep = impl.batched_nms(boxes, scores, torch.zeros(n, dtype=torch.int64), 0.5)
    assert sorted(keep.tolist()) == sorted(torchvision.ops.nms(boxes, scores, 0.5).tolist())


@pytest.mark.parametrize("path", PATHS)
def test_scores_of_another_float_dtype(path):
    impl = implementation(path)
    generator = torch.Generator().manual_seed(10)
    boxes = clustered_boxes(generator, 150, clusters=6, dtype=torch.float64)
    scores = (torch.randint(0, 10, (150,), generator=generator) / 10).float()
    idxs = torch.randint(0, 3, (150,), generator=generator)
    # Widening to float64 is exact and keeps the order (and the ties), so the result is
    # torchvision's on float64 scores.
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        narrow = scores.to(dtype)
        wide = narrow.double()
        assert torch.equal(impl.nms(boxes, narrow, 0.5), torchvision.ops.nms(boxes, wide, 0.5))
        assert torch.equal(impl.batched_nms(boxes, narrow, idxs, 0.5),
                           batched_nms_reference(boxes, wide, idxs, 0.5))
    with raises_naming("scores"):
        impl.nms(boxes, torch.tensor([float("nan")] * 150, dtype=torch.float16), 0.5)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_empty_inputs(path, dtype):
    impl = implementation(path)
    boxes, scores = torch.zeros(0, 4, dtype=dtype), torch.zeros(0, dtype=dtype)
    for keep in (impl.nms(boxes, scores, 0.5),
                 impl.batched_nms(boxes, scores, torch.zeros(0, dtype=torch.int64), 0.5)):
        assert keep.shape == (0,) and keep.dtype == torch.int64


@pytest.mark.parametrize("path", PATHS)
def test_non_contiguous_inputs(path):
    impl = implementation(path)
    generator = torch.Generator().manual_seed(11)
    boxes = clustered_boxes(generator, 100, clusters=5).repeat_interleave(2, dim=1)[:, ::2]
    scores = torch.rand(100, 2, generator=generator)[:, 1]
    idxs = torch.randint(0, 3, (100, 2), generator=generator)[:, 0]
    assert not (boxes.is_contiguous() or scores.is_contiguous() or idxs.is_contiguous())
    expected = torchvision.ops.nms(boxes.contiguous(), scores.contiguous(), 0.5)
    assert torch.equal(impl.nms(boxes, scores, 0.5), expected)
    assert torch.equal(impl.batched_nms(boxes, scores, idxs, 0.5),
                       batched_nms_reference(boxes.contiguous(), scores.contiguous(), idxs.contiguous(), 0.5))


def test_public_ops_equal_torchvision():
    generator = torch.Generator().manual_seed(12)
    boxes = clustered_boxes(generator, 300, clusters=10)
    scores = torch.rand(300, generator=generator)
    idxs = torch.randint(0, 3, (300,), generator=generator)
    assert torch.equal(ops.nms(boxes, scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5))
    assert torch.equal(ops.batched_nms(boxes, scores, idxs, 0.5),
                       batched_nms_reference(boxes, scores, idxs, 0.5))


# ---------------------------------------------------------------------------- argument checks

B = torch.arange(12.0).reshape(3, 4)
S = torch.tensor([0.3, 0.2, 0.1])
IDX = torch.zeros(3, dtype=torch.int64)


def _box_with(value):
    boxes = B.clone()
    boxes[1, 2] = value
    return boxes


BAD_NMS_ARGUMENTS = [
    ("rank-3 boxes", lambda f: f.nms(B[None], S, 0.5), "boxes"),
    ("rank-1 boxes", lambda f: f.nms(B.flatten(), S, 0.5), "boxes"),
    ("last dim 3", lambda f: f.nms(B[:, :3], S, 0.5), "boxes"),
    ("int boxes", lambda f: f.nms(B.long(), S, 0.5), "boxes"),
    ("nan boxes", lambda f: f.nms(_box_with(float("nan")), S, 0.5), "boxes"),
    ("inf boxes", lambda f: f.nms(_box_with(float("inf")), S, 0.5), "boxes"),
    ("nan scores", lambda f: f.nms(B, torch.tensor([0.1, float("nan"), 0.2]), 0.5), "scores"),
    ("short scores", lambda f: f.nms(B, S[:2], 0.5), "scores"),
    ("long scores", lambda f: f.nms(B, torch.zeros(4), 0.5), "scores"),
    ("2-d scores", lambda f: f.nms(B, S[:, None], 0.5), "scores"),
    ("int scores", lambda f: f.nms(B, torch.tensor([3, 2, 1]), 0.5), "scores"),
    ("threshold -0.1", lambda f: f.nms(B, S, -0.1), "iou_threshold"),
    ("threshold 1.5", lambda f: f.nms(B, S, 1.5), "iou_threshold"),
    ("threshold nan", lambda f: f.nms(B, S, float("nan")), "iou_threshold"),
    ("batched rank", lambda f: f.batched_nms(B[None], S, IDX, 0.5), "boxes"),
    ("batched nan boxes", lambda f: f.batched_nms(_box_with(float("nan")), S, IDX, 0.5), "boxes"),
    ("batched nan scores", lambda f: f.batched_nms(B, torch.tensor([float("nan")] * 3), IDX, 0.5), "scores"),
    ("batched short scores", lambda f: f.batched_nms(B, S[:1], IDX, 0.5), "scores"),
    ("batched threshold -0.1", lambda f: f.batched_nms(B, S, IDX, -0.1), "iou_threshold"),
    ("batched threshold 1.5", lambda f: f.batched_nms(B, S, IDX, 1.5), "iou_threshold"),
    ("batched threshold nan", lambda f: f.batched_nms(B, S, IDX, float("nan")), "iou_threshold"),
    ("float idxs", lambda f: f.batched_nms(B, S, IDX.float(), 0.5), "idxs"),
    ("bool idxs", lambda f: f.batched_nms(B, S, IDX.bool(), 0.5), "idxs"),
    ("short idxs", lambda f: f.batched_nms(B, S, IDX[:2], 0.5), "idxs"),
    ("2-d idxs", lambda f: f.batched_nms(B, S, IDX[:, None], 0.5), "idxs"),
]


test_bad_arguments_raise_value_error_naming_them = bad_argument_test(BAD_NMS_ARGUMENTS)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", REDUCED_DTYPES, ids=str)
def test_reduced_precision_is_refused_on_cpu(path, dtype):
    impl = implementation(path)
    boxes, scores = B.to(dtype), S.to(dtype)
    with raises_naming("boxes"):
        impl.nms(boxes, scores, 0.5)
    with raises_naming("boxes"):
        impl.batched_nms(boxes, scores, IDX, 0.5)


def test_bad_argument_messages_show_what_was_given():
    with pytest.raises(ValueError, match="1.5"):
        ops.nms(B, S, 1.5)
    with pytest.raises(ValueError, match=r"\(3,\).*2"):
        ops.nms(B, S[:2], 0.5)
    with pytest.raises(ValueError, match=r"(?i)float"):
        ops.batched_nms(B, S, IDX.float(), 0.5)

"""The box ops on CUDA: both paths equal torchvision's CUDA results; float16/bfloat16 in float32."""
import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st

from retinadet import ops
from retinadet.modeling.anchor_generators import DefaultAnchorGenerator
from retinadet.modeling.matchers import iou_matcher
from retinadet.modeling.matchers.iou_matcher import IoUMatcher
from retinadet.ops import fallback
from tests.ops.op_cases import (
    DTYPES, EXAMPLES, OFFSETS, PATHS, REDUCED_DTYPES, as_boxes, batched_nms_reference, box_rows,
    clustered_boxes, dense_match_reference, implementation, raises_naming, random_boxes, scores_for,
    thresholds, tv_box_iou,
)

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA is not available: the CUDA kernels need a GPU to run"
)

CUDA = "cuda"


def _cuda_impl(path):
    return implementation(path, CUDA)


# ---------------------------------------------------------------------------- IoU


@pytest.mark.parametrize("path", PATHS)
@EXAMPLES
@given(a=box_rows(), b=box_rows(), offset=st.sampled_from(OFFSETS), dtype=st.sampled_from(DTYPES))
def test_box_iou_equals_torchvision_on_cuda(path, a, b, offset, dtype):
    a, b = as_boxes(a, dtype, offset, CUDA), as_boxes(b, dtype, offset, CUDA)
    iou = _cuda_impl(path).box_iou(a, b)
    assert iou.device.type == CUDA and iou.dtype == dtype and iou.shape == (len(a), len(b))
    assert torch.equal(iou, tv_box_iou(a, b))
    assert torch.equal(iou, fallback.box_iou(a, b))
    # No FMA contraction and IEEE division: the same bits as on the CPU.
    assert torch.equal(iou.cpu(), tv_box_iou(a.cpu(), b.cpu()))


@pytest.mark.parametrize("path", PATHS)
@EXAMPLES
@given(data=st.data(), batch=st.integers(1, 3), n=st.integers(0, 8), m=st.integers(0, 8),
       dtype=st.sampled_from(DTYPES))
def test_batched_box_iou_equals_torchvision_on_cuda(path, data, batch, n, m, dtype):
    a = torch.stack([as_boxes(data.draw(box_rows(n, n)), dtype, 0.0, CUDA) for _ in range(batch)])
    b = torch.stack([as_boxes(data.draw(box_rows(m, m)), dtype, 0.0, CUDA) for _ in range(batch)])
    iou = _cuda_impl(path).batched_box_iou(a, b)
    assert iou.shape == (batch, n, m)
    assert torch.equal(iou, tv_box_iou(a, b))
    assert torch.equal(iou, fallback.batched_box_iou(a, b))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_large_box_iou_on_cuda(path, dtype):
    # More rows than one grid dimension holds (65535) and columns over several blocks.
    generator = torch.Generator().manual_seed(0)
    a = random_boxes(generator, 70000, extent=500.0, dtype=dtype).to(CUDA)
    b = random_boxes(generator, 300, extent=500.0, dtype=dtype).to(CUDA)
    assert torch.equal(_cuda_impl(path).box_iou(a, b), tv_box_iou(a, b))
    a3, b3 = a[:60000].reshape(3, 20000, 4), b[:150].reshape(3, 50, 4)
    assert torch.equal(_cuda_impl(path).batched_box_iou(a3, b3), tv_box_iou(a3, b3))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES + REDUCED_DTYPES, ids=str)
def test_degenerate_boxes_give_zero_on_cuda(path, dtype):
    boxes = torch.tensor(
        [[3, 3, 3, 3], [3, 1, 3, 9], [0, 0, 0, 0], [10, 0, 0, 10], [10, 10, 0, 0], [0, 0, 10, 10]],
        dtype=dtype, device=CUDA,
    )
    expected = torch.zeros(6, 6, dtype=dtype, device=CUDA)
    expected[5, 5] = 1
    impl = _cuda_impl(path)
    assert torch.equal(impl.box_iou(boxes, boxes), expected)
    padded = torch.stack([boxes, torch.zeros_like(boxes)])  # an image of padding only
    assert torch.equal(impl.batched_box_iou(padded, padded), torch.stack([expected, expected * 0]))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", REDUCED_DTYPES, ids=str)
def test_reduced_precision_box_iou_is_float32_rounded(path, dtype):
    generator = torch.Generator().manual_seed(1)
    # Coordinates up to ~60000: areas overflow float16 (max 65504) unless computed in float32.
    a = (random_boxes(generator, 200, extent=50000.0, max_size=10000.0) + 1000).to(dtype).to(CUDA)
    b = (random_boxes(generator, 150, extent=50000.0, max_size=10000.0) + 1000).to(dtype).to(CUDA)
    expected = tv_box_iou(a.float(), b.float()).to(dtype)
    impl = _cuda_impl(path)
    iou = impl.box_iou(a, b)
    assert iou.dtype == dtype and torch.equal(iou, expected)
    assert (expected > 0).sum() > 100
    assert torch.equal(impl.batched_box_iou(a[None], b[None])[0], expected)


# ---------------------------------------------------------------------------- autograd


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES + REDUCED_DTYPES, ids=str)
def test_box_iou_gradient_on_cuda(path, dtype):
    generator = torch.Generator().manual_seed(2)
    a = (random_boxes(generator, 12, extent=30.0) + torch.tensor([0, 0, 1.0, 1.0])).to(dtype).to(CUDA)
    b = (random_boxes(generator, 9, extent=30.0) + torch.tensor([0, 0, 1.0, 1.0])).to(dtype).to(CUDA)
    a = torch.cat([a, torch.tensor([[4, 4, 4, 4]], dtype=dtype, device=CUDA)])  # a zero-area box
    grad_out = torch.randn(13, 9, generator=generator).to(dtype).to(CUDA)

    def grads(fn):
        x, y = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        fn(x, y).backward(grad_out)
        return x.grad, y.grad

    ours, reference = grads(_cuda_impl(path).box_iou), grads(fallback.box_iou)
    for g, r in zip(ours, reference):
        assert torch.isfinite(g).all() and torch.equal(g, r)
    if dtype in DTYPES:
        theirs = grads(torchvision.ops.box_iou)
        torch.testing.assert_close(ours[1], theirs[1])
        torch.testing.assert_close(ours[0][:12], theirs[0][:12])


# ---------------------------------------------------------------------------- NMS


@st.composite
def _nms_case(draw):
    rows = draw(box_rows(max_n=40))
    return (rows, draw(scores_for(len(rows))),
            draw(st.lists(st.integers(0, 3), min_size=len(rows), max_size=len(rows))),
            draw(thresholds), draw(st.sampled_from(OFFSETS)))


@pytest.mark.parametrize("path", PATHS)
@EXAMPLES
@given(case=_nms_case(), dtype=st.sampled_from(DTYPES))
def test_nms_equals_torchvision_on_cuda(path, case, dtype):
    rows, scores, idxs, threshold, offset = case
    boxes = as_boxes(rows, dtype, offset, CUDA)
    scores = torch.tensor(scores, dtype=dtype, device=CUDA)
    idxs = torch.tensor(idxs, dtype=torch.int64, device=CUDA)
    impl = _cuda_impl(path)
    keep = impl.nms(boxes, scores, threshold)
    assert keep.device.type == CUDA and keep.dtype == torch.int64
    assert torch.equal(keep, torchvision.ops.nms(boxes, scores, threshold))
    keep = impl.batched_nms(boxes, scores, idxs, threshold)
    assert torch.equal(keep, batched_nms_reference(boxes, scores, idxs, threshold))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_identical_boxes_and_scores_on_cuda(path, dtype):
    impl = _cuda_impl(path)
    for n in (5, 40, 300):  # the sort changes algorithm with the size
        boxes = torch.tensor([[2.0, 3.0, 12.0, 9.0]], dtype=dtype, device=CUDA).repeat(n, 1)
        scores = torch.full((n,), 0.5, dtype=dtype, device=CUDA)
        assert impl.nms(boxes, scores, 0.5).tolist() == [0]
        assert impl.nms(boxes, scores, 1.0).tolist() == list(range(n))
        assert torch.equal(impl.nms(boxes, scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5))
        assert torch.equal(impl.nms(boxes, scores, 1.0), torchvision.ops.nms(boxes, scores, 1.0))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", [3000, 30000])
def test_large_nms_on_cuda(path, dtype, n):
    # Many 64-box words (30000 boxes: 469), heavy suppression and exact ties.
    generator = torch.Generator().manual_seed(n)
    boxes = clustered_boxes(generator, n, clusters=n // 60, dtype=dtype).to(CUDA)
    scores = (torch.randint(0, 100, (n,), generator=generator) / 100).to(dtype).to(CUDA)
    idxs = torch.randint(0, 8, (n,), generator=generator).to(CUDA)
    impl = _cuda_impl(path)
    for threshold in (0.3, 0.7):
        keep = impl.nms(boxes, scores, threshold)
        assert torch.equal(keep, torchvision.ops.nms(boxes, scores, threshold))
        keep = impl.batched_nms(boxes, scores, idxs, threshold)
        assert torch.equal(keep, batched_nms_reference(boxes, scores, idxs, threshold))
        if n * 4 > 100_000:  # torchvision's batched_nms runs per category on CUDA above this
            assert torch.equal(keep, torchvision.ops.batched_nms(boxes, scores, idxs, threshold))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", REDUCED_DTYPES, ids=str)
def test_reduced_precision_nms_equals_float32_nms(path, dtype):
    # torchvision #3371: float16 boxes with coordinates in the thousands overflow float16 areas
    # (and widths lose bits) unless the IoU is computed in float32. Same boxes, same scores, in
    # float32: the same result.
    generator = torch.Generator().manual_seed(3)
    n = 500
    centres = torch.rand(20, 2, generator=generator) * 50000 + 5000
    pick = torch.randint(20, (n,), generator=generator)
    xy = centres[pick] + torch.randn(n, 2, generator=generator) * 600
    wh = torch.rand(n, 2, generator=generator) * 6000 + 2000
    boxes = torch.cat([xy, torch.clamp(xy + wh, max=60000)], 1).clamp(min=1000).to(dtype).to(CUDA)
    scores = torch.rand(n, generator=generator).to(dtype).to(CUDA)  # rounding makes ties
    idxs = torch.randint(0, 3, (n,), generator=generator).to(CUDA)
    half_areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if dtype == torch.float16:
        assert torch.isinf(half_areas).any()  # the case really overflows float16
    impl = _cuda_impl(path)
    boxes32, scores32 = boxes.float(), scores.float()
    for threshold in (0.3, 0.5, 0.7):
        keep = impl.nms(boxes, scores, threshold)
        assert torch.equal(keep, torchvision.ops.nms(boxes32, scores32, threshold))
        keep = impl.batched_nms(boxes, scores, idxs, threshold)
        assert torch.equal(keep, batched_nms_reference(boxes32, scores32, idxs, threshold))
        assert 20 <= len(keep) < n


# ---------------------------------------------------------------------------- matching


@pytest.mark.parametrize("path", PATHS)
@EXAMPLES
@given(anchors=box_rows(max_n=30), gt=box_rows(max_n=10), offset=st.sampled_from(OFFSETS),
       dtype=st.sampled_from(DTYPES))
def test_match_equals_dense_iou_matrix_on_cuda(path, anchors, gt, offset, dtype):
    anchors = as_boxes(anchors, dtype, offset, CUDA)
    gt = torch.cat([as_boxes(gt, dtype, offset, CUDA), anchors[::3]])  # exact copies: ties
    _check_match(_cuda_impl(path), anchors, gt)


def _check_match(impl, anchors, gt):
    max_iou, argmax, best = impl.match_max_iou(anchors, gt)
    ref_max, ref_arg, ref_best, ref_low = dense_match_reference(anchors, gt)
    assert torch.equal(max_iou, ref_max)
    assert torch.equal(argmax, ref_arg)
    assert torch.equal(best, ref_best)
    assert torch.equal(impl.low_quality_matches(anchors, gt, best), ref_low)
    return ref_max, ref_best, ref_low


def _image_case(size, num_gt, dtype=torch.float32, seed=0):
    """RetinaNet's anchors (P3-P7, 9 per cell) for a size x size image on CUDA and gt boxes."""
    strides = [8, 16, 32, 64, 128]
    generator = DefaultAnchorGenerator(strides=strides, sizes=[32, 64, 128, 256, 512]).to(CUDA)
    features = [torch.empty(1, 1, size // s, size // s, device=CUDA) for s in strides]
    anchors = torch.cat(generator(features, (size, size))).to(dtype)
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num_gt, 2, generator=g) * (size - 30)
    gt = torch.cat([xy, torch.clamp(xy + torch.rand(num_gt, 2, generator=g) * size / 2 + 2, max=size)], 1)
    gt = gt.to(dtype).to(CUDA)
    copies = anchors[torch.randint(len(anchors), (20,), generator=g).to(CUDA)]
    far = torch.full((4, 4), 5 * size, dtype=dtype, device=CUDA) + torch.tensor([0, 0, 50, 50], device=CUDA)
    return anchors, torch.cat([gt, gt[:5], copies, far])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("size, num_gt", [(512, 300), (1024, 1000)])
def test_realistic_image_on_cuda(path, size, num_gt):
    anchors, gt = _image_case(size, num_gt)
    ref_max, ref_best, ref_low = _check_match(_cuda_impl(path), anchors, gt)
    assert (ref_max == 1).sum() >= 20 and (ref_best == 0).sum() == 4 and ref_low.sum() > num_gt // 2


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("allow_low_quality", [True, False])
def test_iou_matcher_on_cuda(path, allow_low_quality, monkeypatch):
    impl = _cuda_impl(path)
    monkeypatch.setattr(iou_matcher, "match_max_iou", impl.match_max_iou)
    monkeypatch.setattr(iou_matcher, "low_quality_matches", impl.low_quality_matches)
    anchors, gt = _image_case(512, 300, seed=1)
    matcher = IoUMatcher((0.4, 0.5), allow_low_quality_matches=allow_low_quality)
    matched_idxs, labels = matcher(gt, anchors)
    expected_idxs, expected_labels = matcher.match_iou_matrix(ops.box_iou(gt, anchors))
    assert torch.equal(matched_idxs, expected_idxs) and torch.equal(labels, expected_labels)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", REDUCED_DTYPES, ids=str)
def test_reduced_precision_match_is_float32_rounded(path, dtype):
    anchors32, gt32 = _image_case(512, 200, seed=2)
    anchors, gt = anchors32.to(dtype), gt32.to(dtype)
    iou32 = tv_box_iou(gt.float(), anchors.float())  # the float32 IoUs of the rounded boxes
    ref_max, ref_arg = iou32.max(dim=0)
    ref_best = iou32.max(dim=1).values.to(dtype)
    # Low-quality ties are looked for among IoUs rounded to the boxes' dtype.
    ref_low = ((iou32.to(dtype) == ref_best[:, None]) & (ref_best[:, None] > 0)).any(dim=0)
    impl = _cuda_impl(path)
    max_iou, argmax, best = impl.match_max_iou(anchors, gt)
    assert max_iou.dtype == best.dtype == dtype
    assert torch.equal(max_iou, ref_max.to(dtype))
    assert torch.equal(argmax, ref_arg)
    assert torch.equal(best, ref_best)
    assert torch.equal(impl.low_quality_matches(anchors, gt, best), ref_low)


# ---------------------------------------------------------------------------- argument checks

_B = torch.arange(12.0).reshape(3, 4)


def _bad_cuda_calls():
    b, s = _B.to(CUDA), torch.tensor([0.3, 0.2, 0.1], device=CUDA)
    i = torch.zeros(3, dtype=torch.int64, device=CUDA)
    nan_b = b.clone()
    nan_b[0, 0] = float("nan")
    return [
        (lambda f: f.box_iou(b, _B), "boxes1 and boxes2"),
        (lambda f: f.batched_box_iou(b[None], _B[None]), "boxes1 and boxes2"),
        (lambda f: f.box_iou(nan_b, b), "boxes1"),
        (lambda f: f.match_max_iou(b, _B), "anchors and gt_boxes"),
        (lambda f: f.low_quality_matches(b, b, torch.zeros(3)), "best_anchor_iou_per_gt"),
        (lambda f: f.nms(b, s.cpu(), 0.5), "scores"),
        (lambda f: f.nms(nan_b, s, 0.5), "boxes"),
        (lambda f: f.nms(b, s, 1.5), "iou_threshold"),
        (lambda f: f.nms(b, torch.full_like(s, float("nan")), 0.5), "scores"),
        (lambda f: f.batched_nms(b, s, i.cpu(), 0.5), "idxs"),
        (lambda f: f.batched_nms(b, s, i.float(), 0.5), "idxs"),
        (lambda f: f.batched_nms(b, s, i, float("nan")), "iou_threshold"),
    ]


@pytest.mark.parametrize("path", PATHS)
def test_bad_arguments_on_cuda_raise_value_error_naming_them(path):
    impl = _cuda_impl(path)
    for call, name in _bad_cuda_calls():
        with raises_naming(name):
            call(impl)

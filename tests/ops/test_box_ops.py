"""box_iou and batched_box_iou, compiled and fallback: equal to torchvision bit for bit, checks, autograd."""
import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st

from retinadet import ops
from retinadet.ops import fallback
from tests.ops.op_cases import (
    bad_argument_test, DTYPES, EXAMPLES, OFFSETS, PATHS, REDUCED_DTYPES, as_boxes, box_rows, implementation, raises_naming,
    random_boxes, tv_box_iou,
)

# ---------------------------------------------------------------------------- values


@pytest.mark.parametrize("path", PATHS)
@EXAMPLES
@given(a=box_rows(), b=box_rows(), offset=st.sampled_from(OFFSETS), dtype=st.sampled_from(DTYPES))
def test_box_iou_equals_torchvision_and_fallback(path, a, b, offset, dtype):
    a, b = as_boxes(a, dtype, offset), as_boxes(b, dtype, offset)
    iou = implementation(path).box_iou(a, b)
    assert iou.shape == (len(a), len(b)) and iou.dtype == dtype
    # Same arithmetic as torchvision, so equal bit for bit; 0 where torchvision has 0 / 0.
    assert torch.equal(iou, tv_box_iou(a, b))
    assert torch.equal(iou, fallback.box_iou(a, b))
    assert not torch.isnan(iou).any() and (iou >= 0).all() and (iou <= 1).all()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_box_iou_equals_torchvision_on_nondegenerate_boxes(path, dtype):
    generator = torch.Generator().manual_seed(1)
    a = random_boxes(generator, 70, dtype=dtype) + torch.tensor([0, 0, 1, 1], dtype=dtype)
    b = random_boxes(generator, 90, dtype=dtype) + torch.tensor([0, 0, 1, 1], dtype=dtype)
    expected = torchvision.ops.box_iou(a, b)  # positive areas: no 0 / 0 anywhere
    assert not torch.isnan(expected).any()
    assert torch.equal(implementation(path).box_iou(a, b), expected)
    assert torch.equal(ops.box_iou(a, b), expected)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_box_iou_hand_values(path, dtype):
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]], dtype=dtype)
    b = torch.tensor(
        [
            [5.0, 0.0, 15.0, 10.0],  # overlap 5 x 10 = 50, union 150: 1/3
            [0.0, 0.0, 10.0, 10.0],  # identical: 1
            [2.0, 2.0, 6.0, 6.0],  # nested: 16 / 100
            [10.0, 0.0, 20.0, 10.0],  # touching edge: 0
            [20.0, 20.0, 30.0, 30.0],  # disjoint: 0
        ],
        dtype=dtype,
    )
    expected = torch.tensor([[1 / 3, 1.0, 0.16, 0.0, 0.0]], dtype=dtype)
    assert torch.equal(implementation(path).box_iou(a, b), expected)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_identical_and_nested_boxes(path, dtype):
    impl = implementation(path)
    outer = torch.tensor([[1.0, 2.0, 9.0, 6.0]], dtype=dtype)  # area 32
    inner = torch.tensor([[3.0, 3.0, 5.0, 5.0]], dtype=dtype)  # area 4, inside outer
    same = outer.repeat(5, 1)
    assert torch.equal(impl.box_iou(same, same), torch.ones(5, 5, dtype=dtype))
    # Nested: IoU = area(inner) / area(outer) = 4 / 32, both ways round.
    assert impl.box_iou(inner, outer).item() == 0.125
    assert impl.box_iou(outer, inner).item() == 0.125


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_zero_area_boxes_give_exactly_zero(path, dtype):
    impl = implementation(path)
    boxes = torch.tensor(
        [
            [3.0, 3.0, 3.0, 3.0],  # point inside the box below
            [3.0, 1.0, 3.0, 9.0],  # vertical line through it
            [0.0, 5.0, 10.0, 5.0],  # horizontal line crossing it
            [0.0, 0.0, 0.0, 0.0],  # padding row
            [0.0, 0.0, 10.0, 10.0],  # an ordinary box
        ],
        dtype=dtype,
    )
    iou = impl.box_iou(boxes, boxes)
    expected = torch.zeros(5, 5, dtype=dtype)
    expected[4, 4] = 1.0
    assert torch.equal(iou, expected)
    # The case torchvision leaves undefined: 0 / 0.
    assert torch.isnan(torchvision.ops.box_iou(boxes[:1], boxes[:1])).all()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_inverted_boxes_give_zero(path, dtype):
    impl = implementation(path)
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]], dtype=dtype)
    inverted = torch.tensor(
        [
            [10.0, 0.0, 0.0, 10.0],  # x2 < x1: area -100, union with the box 0 (0 / 0)
            [10.0, 10.0, 0.0, 0.0],  # both inverted: "area" +100 but no intersection
            [8.0, 0.0, 2.0, 20.0],  # x inverted inside the box: union with it 100 - 120 < 0
        ],
        dtype=dtype,
    )
    iou = impl.box_iou(inverted, torch.cat([box, inverted]))
    assert torch.equal(iou, torch.zeros(3, 4, dtype=dtype))
    assert torch.equal(iou, tv_box_iou(inverted, torch.cat([box, inverted])))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("offset", [1e6, 1e7])
def test_huge_coordinates(path, dtype, offset):
    impl = implementation(path)
    # Integer corners stay exact after the shift (float32 holds integers up to 2**24).
    rows = [[0, 0, 10, 10], [5, 0, 15, 10], [2, 2, 6, 6], [0, 0, 10, 10], [3, 3, 3, 3]]
    a = as_boxes(rows, dtype, offset)
    iou = impl.box_iou(a, a)
    assert torch.equal(iou, tv_box_iou(a, a))
    assert torch.equal(iou, impl.box_iou(as_boxes(rows, dtype), as_boxes(rows, dtype)))
    # [0,0,10,10] vs [5,0,15,10] shifted: inter 50, union 150, rounded once.
    assert iou[0, 1].item() == (torch.tensor(50.0, dtype=dtype) / 150).item()
    # Non-integer corners at 1e7 round differently per dtype; the values still match torchvision.
    generator = torch.Generator().manual_seed(2)
    b = (random_boxes(generator, 40, dtype=torch.float64) + offset).to(dtype)
    assert torch.equal(impl.box_iou(b, b), tv_box_iou(b, b))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_box_iou_empty_inputs(path, dtype):
    impl = implementation(path)
    boxes = torch.ones(3, 4, dtype=dtype)
    for a, b in ((boxes[:0], boxes), (boxes, boxes[:0]), (boxes[:0], boxes[:0])):
        iou = impl.box_iou(a, b)
        assert iou.shape == (len(a), len(b)) and iou.dtype == dtype
    for (b, n, m) in ((0, 3, 5), (2, 0, 5), (2, 3, 0)):
        out = impl.batched_box_iou(torch.zeros(b, n, 4, dtype=dtype), torch.zeros(b, m, 4, dtype=dtype))
        assert out.shape == (b, n, m) and out.dtype == dtype


@pytest.mark.parametrize("path", PATHS)
def test_non_contiguous_inputs(path):
    impl = implementation(path)
    generator = torch.Generator().manual_seed(3)
    wide = random_boxes(generator, 40).repeat_interleave(2, dim=1)  # (40, 8)
    a = wide[:, ::2]  # a strided view of the same boxes
    b = random_boxes(generator, 30).t().contiguous().t()  # column-major
    assert not a.is_contiguous() and not b.is_contiguous()
    assert torch.equal(impl.box_iou(a, b), tv_box_iou(a.contiguous(), b.contiguous()))
    a3, b3 = a.unsqueeze(0).expand(2, -1, -1), b.unsqueeze(0).expand(2, -1, -1)
    assert torch.equal(impl.batched_box_iou(a3, b3), tv_box_iou(a3.contiguous(), b3.contiguous()))


# ---------------------------------------------------------------------------- batched


@pytest.mark.parametrize("path", PATHS)
@EXAMPLES
@given(
    data=st.data(), batch=st.integers(1, 3), n=st.integers(0, 8), m=st.integers(0, 8),
    offset=st.sampled_from(OFFSETS), dtype=st.sampled_from(DTYPES),
)
def test_batched_box_iou_equals_torchvision_and_fallback(path, data, batch, n, m, offset, dtype):
    a = torch.stack([as_boxes(data.draw(box_rows(n, n)), dtype, offset) for _ in range(batch)])
    b = torch.stack([as_boxes(data.draw(box_rows(m, m)), dtype, offset) for _ in range(batch)])
    impl = implementation(path)
    iou = impl.batched_box_iou(a, b)
    assert iou.shape == (batch, n, m) and iou.dtype == dtype
    assert torch.equal(iou, tv_box_iou(a, b))  # torchvision's box_iou takes batches too
    assert torch.equal(iou, fallback.batched_box_iou(a, b))
    for i in range(batch):
        assert torch.equal(iou[i], impl.box_iou(a[i], b[i]))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_batched_box_iou_padding_rows_give_zero(path, dtype):
    impl = implementation(path)
    # Image 0 has 2 gt boxes; image 1 has 1 and a row of zero padding.
    gt = torch.tensor(
        [[[0, 0, 10, 10], [5, 5, 15, 15]], [[0, 0, 4, 4], [0, 0, 0, 0]]], dtype=dtype
    )
    anchors = torch.tensor([[0, 0, 8, 8], [0, 0, 0, 0], [2, 2, 6, 6]], dtype=dtype).expand(2, 3, 4)
    iou = impl.batched_box_iou(gt, anchors)
    # [0,0,10,10] vs [0,0,8,8]: 64 / 100; vs [2,2,6,6]: 16 / 100. [5,5,15,15] vs [0,0,8,8]: 9 / 155;
    # vs [2,2,6,6]: 1 / 115. [0,0,4,4] vs [0,0,8,8]: 16 / 64; vs [2,2,6,6]: 4 / 28.
    # Padding rows and the zero-area anchor give 0 against everything.
    # Every area and intersection is an exact integer, so each IoU is one rounded division.
    inter = torch.tensor([[[64, 0, 16], [9, 0, 1]], [[16, 0, 4], [0, 0, 0]]], dtype=dtype)
    union = torch.tensor([[[100, 1, 100], [155, 1, 115]], [[64, 1, 28], [1, 1, 1]]], dtype=dtype)
    expected = inter / union
    assert torch.equal(iou, expected)


@pytest.mark.parametrize("path", PATHS)
def test_batched_box_iou_batch_size_mismatch(path):
    impl = implementation(path)
    with pytest.raises(ValueError, match="batch size"):
        impl.batched_box_iou(torch.zeros(2, 3, 4), torch.zeros(3, 3, 4))


# ---------------------------------------------------------------------------- argument checks

B = torch.zeros(3, 4)
NAN = float("nan")
INF = float("inf")


def _with(value, row=1, col=2):
    boxes = torch.arange(12.0).reshape(3, 4)
    boxes[row, col] = value
    return boxes


BAD_IOU_ARGUMENTS = [
    ("rank-1 boxes1", lambda f: f.box_iou(torch.zeros(4), B), "boxes1"),
    ("rank-3 boxes2", lambda f: f.box_iou(B, torch.zeros(1, 3, 4)), "boxes2"),
    ("last dim 5", lambda f: f.box_iou(torch.zeros(3, 5), B), "boxes1"),
    ("last dim 3", lambda f: f.box_iou(B, torch.zeros(3, 3)), "boxes2"),
    ("int boxes", lambda f: f.box_iou(B, torch.zeros(3, 4, dtype=torch.int64)), "boxes2"),
    ("dtype mismatch", lambda f: f.box_iou(B, B.double()), "boxes1 and boxes2"),
    ("nan boxes1", lambda f: f.box_iou(_with(NAN), B), "boxes1"),
    ("inf boxes2", lambda f: f.box_iou(B, _with(INF)), "boxes2"),
    ("-inf boxes2", lambda f: f.box_iou(B, _with(-INF, 2, 0)), "boxes2"),
    ("batched rank 2", lambda f: f.batched_box_iou(B, B[None]), "boxes1"),
    ("batched last dim", lambda f: f.batched_box_iou(B[None], torch.zeros(1, 3, 3)), "boxes2"),
    ("batched dtype", lambda f: f.batched_box_iou(B[None].double(), B[None]), "boxes1 and boxes2"),
    ("batched nan", lambda f: f.batched_box_iou(B[None], _with(NAN)[None]), "boxes2"),
]


test_bad_arguments_raise_value_error_naming_them = bad_argument_test(BAD_IOU_ARGUMENTS)


@pytest.mark.parametrize("path", PATHS)
def test_finiteness_is_checked_on_what_a_view_holds(path):
    impl = implementation(path)
    wide = torch.arange(24.0).reshape(3, 8)
    wide[:, 1::2] = float("nan")  # outside the view below: not part of the boxes
    boxes = wide[:, ::2]
    assert torch.equal(impl.box_iou(boxes, boxes), tv_box_iou(boxes.contiguous(), boxes.contiguous()))
    wide[2, 6] = float("inf")  # last coordinate of the last box of the view
    with raises_naming("boxes2"):
        impl.box_iou(B, boxes)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", REDUCED_DTYPES, ids=str)
def test_reduced_precision_is_refused_on_cpu(path, dtype):
    impl = implementation(path)
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0]], dtype=dtype)
    with raises_naming("boxes1"):
        impl.box_iou(boxes, boxes)
    with raises_naming("boxes1"):
        impl.batched_box_iou(boxes[None], boxes[None])


def test_public_op_refuses_non_tensors():
    with raises_naming("boxes1"):
        ops.box_iou([[0.0, 0.0, 1.0, 1.0]], B)


def test_bad_argument_messages_show_what_was_given():
    with pytest.raises(ValueError, match=r"3, 5"):
        ops.box_iou(torch.zeros(3, 5), B)
    with pytest.raises(ValueError, match=r"(?i)long|int64"):
        ops.box_iou(torch.zeros(3, 4, dtype=torch.int64), B)


# ---------------------------------------------------------------------------- autograd


def _grads(fn, a, b, grad_out):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    fn(a, b).backward(grad_out)
    return a.grad, b.grad


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_box_iou_gradient_equals_fallback_and_torchvision(path, dtype):
    generator = torch.Generator().manual_seed(4)
    a = random_boxes(generator, 12, extent=30.0, dtype=dtype) + torch.tensor([0, 0, 1, 1], dtype=dtype)
    b = random_boxes(generator, 9, extent=30.0, dtype=dtype) + torch.tensor([0, 0, 1, 1], dtype=dtype)
    grad_out = torch.randn(12, 9, generator=generator, dtype=torch.float64).to(dtype)
    grads = _grads(implementation(path).box_iou, a, b, grad_out)
    public = _grads(ops.box_iou, a, b, grad_out)
    reference = _grads(fallback.box_iou, a, b, grad_out)
    tv = _grads(torchvision.ops.box_iou, a, b, grad_out)
    assert (reference[0] != 0).any() and (reference[1] != 0).any()  # the boxes do overlap
    for ours, pub, ref, theirs in zip(grads, public, reference, tv):
        assert torch.equal(ours, ref) and torch.equal(pub, ref)
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("path", PATHS)
def test_batched_box_iou_gradient_equals_fallback_and_torchvision(path):
    generator = torch.Generator().manual_seed(5)
    a = random_boxes(generator, 2 * 7, extent=30.0, dtype=torch.float64).reshape(2, 7, 4) + 0.5
    b = random_boxes(generator, 2 * 6, extent=30.0, dtype=torch.float64).reshape(2, 6, 4) + 0.5
    a[..., 2:] += 1.0  # positive areas
    b[..., 2:] += 1.0
    grad_out = torch.randn(2, 7, 6, generator=generator, dtype=torch.float64)
    grads = _grads(implementation(path).batched_box_iou, a, b, grad_out)
    reference = _grads(fallback.batched_box_iou, a, b, grad_out)
    tv = _grads(torchvision.ops.box_iou, a, b, grad_out)
    for ours, ref, theirs in zip(grads, reference, tv):
        assert torch.equal(ours, ref)
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("path", PATHS)
def test_box_iou_gradcheck(path):
    generator = torch.Generator().manual_seed(6)
    a = random_boxes(generator, 5, extent=20.0, dtype=torch.float64) + torch.tensor([0, 0, 2.0, 2.0],
                                                                                      dtype=torch.float64)
    b = random_boxes(generator, 4, extent=20.0, dtype=torch.float64) + torch.tensor([0, 0, 2.0, 2.0],
                                                                                      dtype=torch.float64)
    assert torch.autograd.gradcheck(implementation(path).box_iou,
                                    (a.requires_grad_(), b.requires_grad_()))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_zero_area_pairs_have_finite_gradients(path, dtype):
    boxes = torch.tensor(
        [[3.0, 3.0, 3.0, 3.0], [3.0, 1.0, 3.0, 9.0], [0.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 10.0],
         [0.0, 0.0, 10.0, 10.0]],
        dtype=dtype,
    )
    grad_out = torch.ones(5, 5, dtype=dtype)
    grads = _grads(implementation(path).box_iou, boxes, boxes, grad_out)
    reference = _grads(fallback.box_iou, boxes, boxes, grad_out)
    for ours, ref in zip(grads, reference):
        assert torch.isfinite(ours).all()
        assert torch.equal(ours, ref)


@pytest.mark.parametrize("path", PATHS)
def test_gradient_with_respect_to_one_input_only(path):
    generator = torch.Generator().manual_seed(7)
    a = random_boxes(generator, 4, dtype=torch.float64).requires_grad_(True)
    b = random_boxes(generator, 3, dtype=torch.float64)
    implementation(path).box_iou(a, b).sum().backward()
    a_ref = a.detach().clone().requires_grad_(True)
    fallback.box_iou(a_ref, b).sum().backward()
    assert b.grad is None
    assert torch.equal(a.grad, a_ref.grad)


# ---------------------------------------------------------------------------- box_area
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64])
def test_box_area_of_integer_boxes_does_not_overflow(dtype):
    # 100 x 100 = 10000 does not fit in int8/int16/uint8: computed in int64, as torchvision upcasts.
    boxes = torch.tensor([[0, 0, 100, 100], [0, 0, 0, 0], [10, 20, 13, 24]], dtype=dtype)
    area = ops.box_area(boxes)
    assert area.dtype == torch.int64 and area.tolist() == [10000, 0, 12]
    assert area.tolist() == torchvision.ops.box_area(boxes).tolist()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_box_area_keeps_floating_dtypes(dtype):
    boxes = torch.tensor([[0.0, 0.0, 2.5, 4.0], [3.0, 3.0, 1.0, 5.0]], dtype=dtype)
    area = ops.box_area(boxes)
    assert area.dtype == dtype and area.tolist() == [10.0, -4.0]  # an inverted box: negative area

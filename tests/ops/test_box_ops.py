"""Tests of retinadet.ops (box_iou, batched_box_iou, nms, batched_nms) against torchvision.ops."""
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from retinadet import ops

DTYPES = [torch.float32, torch.float64]
FAST = settings(max_examples=60, deadline=None)

# Coordinates on a coarse grid produce exact ties, touching edges and zero-width boxes;
# the fine ones produce general positions.
_coord = st.one_of(st.integers(0, 20).map(float), st.floats(0, 100, allow_nan=False, width=32))
_size = st.one_of(st.just(0.0), st.integers(1, 10).map(float), st.floats(0, 60, allow_nan=False, width=32))


@st.composite
def _boxes(draw, min_n=0, max_n=12):
    """(N, 4) xyxy boxes as nested lists, x2 >= x1 and y2 >= y1, zero-size boxes included."""
    n = draw(st.integers(min_n, max_n))
    rows = []
    for _ in range(n):
        x1, y1, w, h = draw(_coord), draw(_coord), draw(_size), draw(_size)
        rows.append([x1, y1, x1 + w, y1 + h])
    return rows


def _tensor(rows, dtype):
    return torch.tensor(rows, dtype=dtype).reshape(-1, 4)


# ---------------------------------------------------------------------------- IoU


@FAST
@given(a=_boxes(), b=_boxes(), dtype=st.sampled_from(DTYPES))
def test_box_iou_equals_torchvision(a, b, dtype):
    a, b = _tensor(a, dtype), _tensor(b, dtype)
    ours = ops.box_iou(a, b)
    theirs = torchvision.ops.box_iou(a, b)
    assert ours.shape == (len(a), len(b)) and ours.dtype == dtype
    # torchvision divides 0 by 0 for two zero-area boxes (NaN); ours gives 0 there and is
    # bit-identical everywhere else.
    undefined = torch.isnan(theirs)
    assert torch.equal(ours[~undefined], theirs[~undefined])
    assert (ours[undefined] == 0).all()
    assert not torch.isnan(ours).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_box_iou_hand_values(dtype):
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]], dtype=dtype)
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]], dtype=dtype)
    # Overlap 5 x 10 = 50, union 100 + 100 - 50 = 150: 1/3; identical: 1; disjoint: 0.
    expected = torch.tensor([[1 / 3, 1.0, 0.0]], dtype=dtype)
    torch.testing.assert_close(ops.box_iou(a, b), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_area_boxes_give_zero_not_nan(dtype):
    point = torch.tensor([[3.0, 3.0, 3.0, 3.0]], dtype=dtype)
    line = torch.tensor([[3.0, 1.0, 3.0, 9.0]], dtype=dtype)
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]], dtype=dtype)
    for x, y in ((point, point), (line, line), (point, line), (point, box), (box, line)):
        iou = ops.box_iou(x, y)
        assert iou.shape == (1, 1)
        assert iou.item() == 0.0
    assert torch.isnan(torchvision.ops.box_iou(point, point)).all()  # the case handled differently


def test_box_iou_empty_sets():
    assert ops.box_iou(torch.zeros(0, 4), torch.zeros(5, 4)).shape == (0, 5)
    assert ops.box_iou(torch.zeros(3, 4), torch.zeros(0, 4)).shape == (3, 0)


@FAST
@given(
    data=st.data(),
    batch=st.integers(1, 4),
    n=st.integers(0, 8),
    m=st.integers(0, 8),
    dtype=st.sampled_from(DTYPES),
)
def test_batched_box_iou_equals_per_image_box_iou(data, batch, n, m, dtype):
    a = torch.stack([_tensor(data.draw(_boxes(n, n)), dtype) for _ in range(batch)])
    b = torch.stack([_tensor(data.draw(_boxes(m, m)), dtype) for _ in range(batch)])
    ours = ops.batched_box_iou(a, b)
    assert ours.shape == (batch, n, m)
    for i in range(batch):
        assert torch.equal(ours[i], ops.box_iou(a[i], b[i]))


def test_batched_box_iou_padding_rows_give_zero():
    # Image 0 has 2 gt boxes, image 1 has 1 and a padding row of zeros.
    gt = torch.tensor(
        [
            [[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]],
            [[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 0.0, 0.0]],
        ]
    )
    anchors = torch.tensor([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 6.0, 6.0]])
    iou = ops.batched_box_iou(gt, anchors.expand(2, 3, 4))
    assert iou.shape == (2, 2, 3)
    assert torch.equal(iou[1, 1], torch.zeros(3))  # padding row: zero against every anchor
    assert (iou[:, :, 1] == 0).all()  # including against a zero-area anchor (0 / 0)
    # Hand values: [0,0,10,10] vs [0,0,8,8]: 64 / 100; [0,0,4,4] vs [2,2,6,6]: 4 / (16 + 16 - 4).
    assert iou[0, 0, 0].item() == pytest.approx(0.64)
    assert iou[1, 0, 2].item() == pytest.approx(4 / 28)


def test_batched_box_iou_batch_mismatch():
    with pytest.raises(ValueError, match="batch size"):
        ops.batched_box_iou(torch.zeros(2, 3, 4), torch.zeros(3, 3, 4))


# ---------------------------------------------------------------------------- NMS


@st.composite
def _nms_case(draw):
    rows = draw(_boxes(max_n=30))
    # Few distinct score values: identical scores are common.
    scores = draw(
        st.lists(st.sampled_from([0.1, 0.3, 0.3, 0.5, 0.9]), min_size=len(rows), max_size=len(rows))
    )
    classes = draw(st.lists(st.integers(0, 2), min_size=len(rows), max_size=len(rows)))
    threshold = draw(st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]))
    return rows, scores, classes, threshold


@FAST
@given(case=_nms_case(), dtype=st.sampled_from(DTYPES))
def test_nms_equals_torchvision(case, dtype):
    rows, scores, classes, threshold = case
    boxes, scores = _tensor(rows, dtype), torch.tensor(scores, dtype=dtype)
    idxs = torch.tensor(classes, dtype=torch.int64)
    keep = ops.nms(boxes, scores, threshold)
    assert keep.dtype == torch.int64
    assert torch.equal(keep, torchvision.ops.nms(boxes, scores, threshold))
    keep = ops.batched_nms(boxes, scores, idxs, threshold)
    assert torch.equal(keep, torchvision.ops.batched_nms(boxes, scores, idxs, threshold))
    # Kept in decreasing score order.
    assert (scores[keep][:-1] >= scores[keep][1:]).all()


def test_nms_hand_case():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.8, 0.9, 0.7])
    # Box 1 (best) overlaps box 0 with IoU 90 / 110 = 0.82 > 0.5: box 0 goes; box 2 stays.
    assert ops.nms(boxes, scores, 0.5).tolist() == [1, 2]
    # Different classes never suppress each other.
    assert ops.batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [1, 0, 2]


# ---------------------------------------------------------------------------- argument checks

B = torch.zeros(3, 4)
S = torch.zeros(3)
IDX = torch.zeros(3, dtype=torch.int64)
NAN_BOX = torch.tensor([[float("nan"), 0.0, 1.0, 1.0]])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: ops.box_iou(torch.zeros(4), B), "boxes1"),  # wrong rank
        (lambda: ops.box_iou(B, torch.zeros(1, 3, 4)), "boxes2"),
        (lambda: ops.box_iou(torch.zeros(3, 5), B), "boxes1"),  # last dim != 4
        (lambda: ops.box_iou(B, torch.zeros(3, 4, dtype=torch.int64)), "boxes2"),  # int boxes
        (lambda: ops.box_iou(B, torch.zeros(3, 4, dtype=torch.float64)), "boxes1 and boxes2"),
        (lambda: ops.batched_box_iou(B, B), "boxes1"),  # rank 2 where (B, N, 4) is needed
        (lambda: ops.batched_box_iou(torch.zeros(1, 3, 4), torch.zeros(1, 3, 3)), "boxes2"),
        (lambda: ops.nms(torch.zeros(1, 3, 4), S, 0.5), "boxes"),
        (lambda: ops.nms(torch.zeros(3, 3), S, 0.5), "boxes"),
        (lambda: ops.nms(torch.zeros(3, 4, dtype=torch.int32), S, 0.5), "boxes"),
        (lambda: ops.nms(NAN_BOX, torch.zeros(1), 0.5), "boxes"),
        (lambda: ops.nms(torch.tensor([[0.0, 0.0, float("inf"), 1.0]]), torch.zeros(1), 0.5), "boxes"),
        (lambda: ops.nms(B, torch.tensor([0.1, float("nan"), 0.2]), 0.5), "scores"),
        (lambda: ops.nms(B, torch.zeros(2), 0.5), "scores"),  # wrong length
        (lambda: ops.nms(B, torch.zeros(3, 1), 0.5), "scores"),
        (lambda: ops.nms(B, S, 1.5), "iou_threshold"),
        (lambda: ops.nms(B, S, -0.1), "iou_threshold"),
        (lambda: ops.batched_nms(B, S, IDX, 1.5), "iou_threshold"),
        (lambda: ops.batched_nms(B, torch.zeros(4), IDX, 0.5), "scores"),
        (lambda: ops.batched_nms(B, S, torch.zeros(2, dtype=torch.int64), 0.5), "idxs"),
        (lambda: ops.batched_nms(NAN_BOX, torch.zeros(1), torch.zeros(1, dtype=torch.int64), 0.5), "boxes"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(call, name):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(name) or f" {name} " in str(info.value), str(info.value)


def test_bad_argument_messages_show_the_value():
    with pytest.raises(ValueError, match=r"\(3, 5\)"):
        ops.box_iou(torch.zeros(3, 5), B)
    with pytest.raises(ValueError, match="torch.int64"):
        ops.box_iou(torch.zeros(3, 4, dtype=torch.int64), B)
    with pytest.raises(ValueError, match="1.5"):
        ops.nms(B, S, 1.5)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        ops.nms(B, torch.zeros(2), 0.5)

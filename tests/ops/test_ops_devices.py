"""Inputs on two devices: every op says which argument is where, on every path (the public ops, the
compiled ops called directly, and under torch.compile's fake tensors), instead of returning
uninitialised memory or a fake-tensor error."""
import pytest
import torch

from retinadet import ops
from retinadet.ops import fallback

OTHER = "meta"  # a second device every machine has


def _boxes(n, device="cpu"):
    xy = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)
    return torch.cat([xy, xy + 5.0], dim=1).to(device)


def _cases():
    b, m = _boxes(4), _boxes(3)
    scores, idxs = torch.rand(4), torch.zeros(4, dtype=torch.int64)
    best = torch.ones(3)
    return {
        "box_iou": ((b, m.to(OTHER)), "boxes1 on cpu, boxes2 on meta"),
        "batched_box_iou": ((b[None], m[None].to(OTHER)), "boxes1 on cpu, boxes2 on meta"),
        "match_max_iou": ((b.to(OTHER), m), "anchors on meta, gt_boxes on cpu"),
        "low_quality_matches": ((b, m, best.to(OTHER)), "anchors on cpu, gt_boxes on cpu, best_anchor_iou_per_gt on meta"),
        "nms": ((b, scores.to(OTHER), 0.5), "boxes on cpu, scores on meta"),
        "batched_nms": ((b, scores, idxs.to(OTHER), 0.5), "boxes on cpu, scores on cpu, idxs on meta"),
    }


@pytest.mark.parametrize("op", list(_cases()))
def test_public_op_names_each_arguments_device(op):
    args, where = _cases()[op]
    with pytest.raises(ValueError, match=f"{op}: the inputs must lie on one device; got {where}"):
        getattr(ops, op)(*args)


@pytest.mark.parametrize("op", list(_cases()))
def test_compiled_op_called_directly_names_each_arguments_device(op):
    if not ops.extension_loaded():
        pytest.skip("retinadet._C is not loaded")
    args, where = _cases()[op]
    with pytest.raises(ValueError, match=f"{op}: the inputs must lie on one device; got {where}"):
        getattr(torch.ops.retinadet, op)(*args)


def test_box_ioa_and_paired_intersection_check_devices_too():
    b = _boxes(2)
    with pytest.raises(ValueError, match="box_ioa: .*boxes on cpu, regions on meta"):
        ops.box_ioa(b, b.to(OTHER))
    with pytest.raises(ValueError, match="paired_intersection_and_enclosure: .*boxes1 on meta, boxes2 on cpu"):
        ops.paired_intersection_and_enclosure(b.to(OTHER), b)


def test_one_device_passes():
    b = _boxes(4)
    assert ops.box_iou(b, b[:2]).shape == (4, 2) and ops.nms(b, torch.rand(4), 0.5).numel() == 4
    fallback.check_same_device("x", a=b, b=b, c=None)  # non-tensors are left to the other checks

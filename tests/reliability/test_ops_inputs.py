"""Reliability catalogue, box-op family: bad shapes, dtypes, values and devices on the fallback and compiled ops."""
import pytest
import torch

from retinadet import ops
from retinadet.ops import fallback

OTHER = "meta"  # a second device every machine has


def _impl(name):
    if name == "fallback":
        return fallback
    if not ops.extension_loaded():
        pytest.skip(f"retinadet._C is not loaded ({ops.extension_load_error()})")
    return torch.ops.retinadet


IMPLS = ["fallback", "compiled"]


def _boxes(n, dtype=torch.float32):
    xy = torch.arange(n * 2, dtype=dtype).reshape(n, 2)
    return torch.cat([xy, xy + 5], dim=1)


def _with(boxes, row, col, value):
    boxes = boxes.clone()
    boxes[row, col] = value
    return boxes


# Each case: op name, a function of the implementation making the call, the message. Checked on both paths.
CASES = {
    "box_iou-five-columns": ("box_iou", lambda m: m.box_iou(torch.zeros(2, 5), _boxes(3)),
                             r"box_iou: boxes1 must have shape \(N, 4\) xyxy; got \[2, 5\]"),
    "box_iou-one-dimensional": ("box_iou", lambda m: m.box_iou(_boxes(2), torch.zeros(4)),
                                r"box_iou: boxes2 must have shape \(N, 4\) xyxy; got \[4\]"),
    "box_iou-integer-boxes": ("box_iou", lambda m: m.box_iou(_boxes(2, torch.int64), _boxes(3, torch.int64)),
                              r"box_iou: boxes1 must be a floating tensor; got dtype (torch\.int64|Long)"),
    "box_iou-nan-coordinate": ("box_iou", lambda m: m.box_iou(_boxes(2), _with(_boxes(3), 1, 2, float("nan"))),
                               r"box_iou: boxes2 contains NaN or inf coordinates"),
    "box_iou-inf-coordinate": ("box_iou", lambda m: m.box_iou(_with(_boxes(2), 0, 0, float("-inf")), _boxes(3)),
                               r"box_iou: boxes1 contains NaN or inf coordinates"),
    "box_iou-float16-on-cpu": ("box_iou", lambda m: m.box_iou(_boxes(2).half(), _boxes(3).half()),
                               r"box_iou: boxes1 has dtype (torch\.float16|Half) on cpu; supported: float32 and float64, "
                               r"plus float16 and bfloat16 on CUDA"),
    "box_iou-mixed-dtypes": ("box_iou", lambda m: m.box_iou(_boxes(2), _boxes(3).double()),
                             r"box_iou: boxes1 and boxes2 must share dtype and device; got (torch\.float32|Float) on "
                             r"cpu and (torch\.float64|Double) on cpu"),
    "batched_box_iou-unbatched": ("batched_box_iou", lambda m: m.batched_box_iou(_boxes(2), _boxes(3)[None]),
                                  r"batched_box_iou: boxes1 must have shape \(B, N, 4\) xyxy; got \[2, 4\]"),
    "batched_box_iou-batch-sizes-differ": (
        "batched_box_iou", lambda m: m.batched_box_iou(_boxes(2).expand(2, 2, 4), _boxes(3)[None]),
        r"batched_box_iou: boxes1 and boxes2 must have the same batch size; got 2 and 1"),
    "match_max_iou-integer-anchors": ("match_max_iou", lambda m: m.match_max_iou(_boxes(4, torch.int32), _boxes(2)),
                                      r"match_max_iou: anchors must be a floating tensor; got dtype "
                                      r"(torch\.int32|Int)"),
    "match_max_iou-nan-gt": ("match_max_iou", lambda m: m.match_max_iou(_boxes(4), _with(_boxes(2), 0, 3, float("nan"))),
                             r"match_max_iou: gt_boxes contains NaN or inf coordinates"),
    "low_quality_matches-best-wrong-length": (
        "low_quality_matches", lambda m: m.low_quality_matches(_boxes(4), _boxes(2), torch.ones(3)),
        r"low_quality_matches: best_anchor_iou_per_gt must have shape \(2,\) to match gt_boxes; got \[3\]"),
    "nms-nan-score": ("nms", lambda m: m.nms(_boxes(3), torch.tensor([0.9, float("nan"), 0.1]), 0.5),
                      r"nms: scores contain NaN"),
    "nms-threshold-above-1": ("nms", lambda m: m.nms(_boxes(3), torch.rand(3), 1.5),
                              r"nms: iou_threshold must be in \[0, 1\]; got 1\.5"),
    "nms-threshold-below-0": ("nms", lambda m: m.nms(_boxes(3), torch.rand(3), -0.1),
                              r"nms: iou_threshold must be in \[0, 1\]; got -0\.1"),
    "nms-scores-wrong-length": ("nms", lambda m: m.nms(_boxes(3), torch.rand(4), 0.5),
                                r"nms: scores must have shape \(3,\) to match boxes; got \[4\]"),
    "nms-integer-scores": ("nms", lambda m: m.nms(_boxes(3), torch.tensor([3, 2, 1]), 0.5),
                           r"nms: scores must be a floating tensor; got dtype (torch\.int64|Long)"),
    "nms-nan-box": ("nms", lambda m: m.nms(_with(_boxes(3), 2, 1, float("nan")), torch.rand(3), 0.5),
                    r"nms: boxes contains NaN or inf coordinates"),
    "batched_nms-float-idxs": ("batched_nms", lambda m: m.batched_nms(_boxes(3), torch.rand(3), torch.zeros(3), 0.5),
                               r"batched_nms: idxs must be an integer tensor of category ids; got dtype "
                               r"(torch\.float32|Float)"),
    "batched_nms-idxs-wrong-length": (
        "batched_nms", lambda m: m.batched_nms(_boxes(3), torch.rand(3), torch.zeros(2, dtype=torch.int64), 0.5),
        r"batched_nms: idxs must have shape \(3,\) to match boxes; got \[2\]"),
    "batched_nms-threshold-above-1": (
        "batched_nms", lambda m: m.batched_nms(_boxes(3), torch.rand(3), torch.zeros(3, dtype=torch.int64), 1.25),
        r"batched_nms: iou_threshold must be in \[0, 1\]; got 1\.25"),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(CASES))
def test_bad_argument_is_named(impl, case):
    _, call, message = CASES[case]
    with pytest.raises(ValueError, match=message):
        call(_impl(impl))


# ------------------------------------------------------------------------------------------ two devices


def _device_cases():
    b, m = _boxes(4), _boxes(3)
    scores, idxs, best = torch.rand(4), torch.zeros(4, dtype=torch.int64), torch.ones(3)
    return {
        "box_iou": ((b, m.to(OTHER)), r"boxes2"),
        "batched_box_iou": ((b[None], m[None].to(OTHER)), r"boxes2"),
        "match_max_iou": ((b.to(OTHER), m), r"anchors"),
        "low_quality_matches": ((b, m, best.to(OTHER)), r"best_anchor_iou_per_gt"),
        "nms": ((b, scores.to(OTHER), 0.5), r"scores"),
        "batched_nms": ((b, scores, idxs.to(OTHER), 0.5), r"idxs"),
    }


@pytest.mark.parametrize("path", ["public", "compiled"])
@pytest.mark.parametrize("op", list(_device_cases()))
def test_inputs_on_two_devices_name_the_argument_on_meta(path, op):
    module = ops if path == "public" else _impl("compiled")
    args, name = _device_cases()[op]
    with pytest.raises(ValueError, match=rf"{op}: the inputs must lie on one device; got .*{name} on meta"):
        getattr(module, op)(*args)


@pytest.mark.parametrize("op", ["box_iou", "batched_box_iou", "match_max_iou", "low_quality_matches", "nms",
                                "batched_nms"])
def test_fallback_called_directly_on_two_devices_names_the_meta_argument(op):
    args, name = _device_cases()[op]
    with pytest.raises(ValueError, match=rf"{op}: .*{name}.* (on )?meta"):
        getattr(fallback, op)(*args)


# ------------------------------------------------------------------------------------------ box_area


def test_box_area_of_integer_boxes_does_not_overflow():
    boxes = torch.tensor([[0, 0, 100, 100]], dtype=torch.int8)
    area = ops.box_area(boxes)
    assert area.dtype == torch.int64 and area.tolist() == [10000]


def test_box_area_of_three_column_boxes_is_refused():
    with pytest.raises(ValueError, match=r"\(N, 4\).*\[2, 3\]"):
        ops.box_area(torch.zeros(2, 3))


def test_box_area_of_five_column_boxes_is_refused():
    with pytest.raises(ValueError, match=r"\(N, 4\).*\[2, 5\]"):
        ops.box_area(torch.zeros(2, 5))

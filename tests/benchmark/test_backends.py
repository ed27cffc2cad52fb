"""tools/benchmark.py --task eval --backend: each backend timed beside the eager model, with its detections
compared to the eager model's; bad backend requests are named."""
import pytest
import torch

from retinadet.benchmark import BenchmarkError, BenchmarkOptions
from retinadet.benchmark.options import parse_backend
from retinadet.benchmark.random_weights import calibrate_random_detector
from retinadet.benchmark.report import markdown
from retinadet.benchmark.tasks import run_benchmark
from retinadet.modeling import build_model
from retinadet.utils.testing import quick_batch, quick_cfg
from tests.benchmark.benchmark_checks import QUICK


def test_eval_with_backends_reports_speed_and_detection_differences():
    pytest.importorskip("onnxruntime")
    report = run_benchmark(BenchmarkOptions(QUICK, "eval", size=(96, 128), iters=1, warmup=0, no_flops=True,
                                            backend=["eager", "torchscript", "onnxruntime"]))
    assert list(report["models"]) == ["ours", "ours-torchscript", "ours-onnxruntime"]
    rows = report["backends"]
    assert rows["ours"]["max_box_diff"] == 0 and rows["ours"]["max_score_diff"] == 0
    assert rows["ours-torchscript"]["same_count_and_labels"] and rows["ours-torchscript"]["max_box_diff"] == 0
    assert rows["ours-onnxruntime"]["same_count_and_labels"] and rows["ours-onnxruntime"]["max_box_diff"] <= 1e-3
    assert rows["ours"]["detections"] > 0  # the calibrated random model detects something to compare
    assert rows["ours"]["speedup_over_torchvision"] is None  # no --compare-torchvision
    assert "| ours, onnxruntime |" in markdown(report)


@pytest.mark.parametrize("spec, expected", [("onnxruntime", ("onnxruntime", "float32")),
                                            ("openvino:bfloat16", ("openvino", "bfloat16"))])
def test_parse_backend(spec, expected):
    assert parse_backend(spec) == expected


@pytest.mark.parametrize("kwargs, match", [
    ({"task": "eval", "backend": ["openvino:fp16"]}, "backend 'openvino:fp16' is not one of"),
    ({"task": "eval", "backend": ["tensorrt"]}, "backend 'tensorrt' is not one of"),
    ({"task": "train", "backend": ["onnxruntime"]}, "applies to --task eval only"),
])
def test_bad_backend_requests_are_named(kwargs, match):
    with pytest.raises(BenchmarkError, match=match):
        BenchmarkOptions(QUICK, **kwargs)


def test_calibrated_random_detector_normalises_and_spreads_scores():
    torch.manual_seed(0)
    model = build_model(quick_cfg("MODEL.RESNETS.NORM", "FrozenBN", "MODEL.HEAD.NORM", "")).eval()
    batch = quick_batch(1, 96, 128)
    seen = {}
    stem = model.backbone.bn1
    handle = stem.register_forward_hook(lambda m, i, o: seen.update(out=o.clone()))  # before the in-place ReLU
    calibrate_random_detector(model, batch)
    with torch.no_grad():
        detections = model(batch)[0]
    handle.remove()
    # The stem's batch norm now gives zero-mean, unit-variance channels on this image.
    out = seen["out"]
    assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-3 and (out.var(dim=(0, 2, 3)) - 1).abs().max() < 1e-2
    # Class biases spread over [-4, -1.5] (scores about 0.02-0.2): detections exist, none saturated.
    bias = model.head.cls_score.bias
    assert float(bias.min()) == pytest.approx(-4.0) and float(bias.max()) == pytest.approx(-1.5)
    assert len(detections["scores"]) > 0 and float(detections["scores"].max()) < 0.99

"""The goal benchmarks in benchmarks/ on their smallest cases: they run on retinadet.benchmark's primitives
and print tables whose figures follow from what they measured."""
import importlib.util
import re
import sys
from types import SimpleNamespace

import pytest
import torch

from retinadet.config import get_cfg
from tests.benchmark.benchmark_checks import REPO


def _script(name):
    """benchmarks/<name>.py imported from its file."""
    spec = importlib.util.spec_from_file_location(f"goal_benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_benchmark_quick_run(capsys, monkeypatch):
    model = _script("model")
    args = ["--quick", "--repeats", "1", "--threads", "1"]
    monkeypatch.setattr(sys, "argv", ["benchmarks/model.py", *args])  # the header names the command
    model.main(args)
    printed = capsys.readouterr().out
    rows = {m.group(1): [float(x) for x in m.groups()[1:]] for m in re.finditer(
        r"^\| (\w+, batch \d, \d+x\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \(", printed, re.MULTILINE)}
    assert list(rows) == ["train, batch 2, 64x64", "infer, batch 1, 128x128", "infer, batch 1, 128x192"]
    for reference_ms, ours_ms, ratio in rows.values():
        assert reference_ms > 0 and ours_ms > 0 and ratio == pytest.approx(ours_ms / reference_ms, abs=0.002)
    # The same seeded, converted weights as ever: the same losses, and the same post-processing workload.
    assert re.search(r"train, batch 2, 64x64: losses agree to \d\.\de-\d\d \(relative\)", printed)
    assert "infer, batch 1, 128x128: 251 scores above the threshold, both return 110 detections" in printed
    assert "infer, batch 1, 128x192: 584 scores above the threshold, both return 247 detections" in printed


def test_ops_benchmark_cases_and_their_memory():
    ops_benchmark = _script("ops")
    cases = {c.name: c for c in ops_benchmark.build_cases(quick=True, seed=0)}
    args = SimpleNamespace(warmup=1, repeat=2)
    nms = ops_benchmark.time_case(cases["nms N=1000"], torch.device("cpu"), args)
    assert nms["note"] == "same 720 kept" and nms["reference"] > 0 and nms["ours"] > 0
    low, high = nms["spread"]
    assert 0 < low <= high
    # One call of each box_iou on 1000 x 1000 boxes, measured as in the child processes: ours grows by its
    # 3.8 MiB output, torchvision's by its temporaries as well.
    name = "box_iou 1000 x 1000"
    memory = ops_benchmark._cpu_memory_task(((name,), ("ours", "reference"), True, 0, 1))
    (ours, reset), (reference, _) = memory[(name, "ours")], memory[(name, "reference")]
    output_mib = 1000 * 1000 * 4 / 2**20
    if reset:
        assert output_mib - 0.5 <= ours < output_mib + 2 and reference > 2 * output_mib


def test_data_benchmark_loader_and_evaluation(tmp_path):
    data = _script("data")
    data.register_shapes(str(tmp_path))
    assert data.loader_throughput(str(tmp_path), "shapes_train_tiny", 0, 2, 1, 2) > 0
    timing = data.evaluation_time(20)
    assert timing["process_s"] > 0 and timing["evaluate_s"] > 0 and 0.0 < timing["AP"] < 100.0
    assert data.evaluation_time(20, "pycocotools")["AP"] == timing["AP"]  # the same detections, equal AP


def test_recipe_variants_are_valid_overrides_of_the_demo():
    recipe_speed = _script("recipe_speed")
    assert len(recipe_speed.SHORT) == len(recipe_speed.VARIANTS)  # short names are unique
    for label, (short, opts) in recipe_speed.VARIANTS.items():
        cfg = get_cfg()
        cfg.merge_from_file(recipe_speed.DEMO_CONFIG)
        cfg.merge_from_list(opts)  # raises on a key the config does not have
        assert recipe_speed.SHORT[short] == label

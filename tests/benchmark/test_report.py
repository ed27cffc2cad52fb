"""retinadet.benchmark.report: the printed tables of a report written by hand, reading reports back and
writing them."""
import os

import pytest

from retinadet.benchmark import BenchmarkError
from retinadet.benchmark.report import load_report, markdown, size_table, time_to_accuracy_summary, write_json

FLOPS = {"per_image": 2_500_000_000, "gflops_per_image": 2.5, "image_size": [64, 96], "by_operator": {"conv": 1},
         "uncounted_ops": {"aten::add": 3, "aten::sigmoid": 1}}


def _model(seconds, last, flops=FLOPS, extra=12.0):
    return {"images_per_iteration": 2.0, "iterations_per_s": 1 / seconds, "images_per_s": 2 / seconds,
            "s_per_iteration": seconds, "s_per_iteration_iqr": [seconds * 0.9, seconds * 1.2],
            "s_per_image": seconds / 2, "peak_memory_mib": 1234.4, "step_extra_memory_mib": extra,
            "times": [seconds], "last": last,
            "parameters": {"total": 34_014_000, "trainable": 33_790_000}, "flops": flops}


def _report(task="train", **extra):
    return {"config_file": "configs/torchvision/retinanet_R_50_FPN.yaml", "task": task, "torch": "2.x",
            "torchvision": None, "torchvision_model": None, "device": "cpu", "threads": 2, "iters": 3, "warmup": 1,
            "load_average": {"before": 0.5, "after": 1.25}, "input": "synthetic", "image_size": [64, 96],
            "flop_convention": "one multiply-add counts as one flop", **extra}


def test_train_report_with_the_torchvision_comparison_and_a_relative_speed():
    report = _report(torchvision="0.x", torchvision_model="retinanet_resnet50_fpn", models={
        "ours": _model(0.5, {"loss_cls": 1.23456}), "torchvision": _model(0.25, {"loss_cls": 2.0}, flops=None,
                                                                          extra=None)},
        ours_over_torchvision={"time": 2.0, "time_iqr": [1.5, 2.5], "peak_memory": 1.0, "step_extra_memory": None},
        relative={"other": "a.json", "other_config_file": "configs/x/faster.yaml",
                  "time": {"ours": 1.1, "torchvision": 0.5}, "ours_over_torchvision": 2.2})
    lines = markdown(report).splitlines()
    assert lines[:3] == [
        "torch 2.x, torchvision 0.x, device cpu, 2 threads; 1-min load average 0.50 before, 1.25 after", "",
        "`configs/torchvision/retinanet_R_50_FPN.yaml`, task train, input synthetic 64x96, 3 timed iterations after "
        "1 warm-up"]
    assert "| ours (retinanet_R_50_FPN.yaml) | 2 | 2.000 | 4.000 | 0.500 (0.450-0.600) | 0.250 | 1234 | 12 |" in lines
    assert ("| torchvision retinanet_resnet50_fpn | 2 | 4.000 | 8.000 | 0.250 (0.225-0.300) | 0.125 | 1234 | - |"
            in lines)
    assert "| train | 2.000 (1.50-2.50) | 1.00 | - |" in lines  # ours / torchvision
    assert ("| s/iteration: this / faster.yaml | ours (retinanet_R_50_FPN.yaml) | torchvision retinanet_resnet50_fpn "
            "| ours' ratio / torchvision's ratio |") in lines
    assert "| train | 1.100 | 0.500 | 2.200 |" in lines
    assert ("| ours (retinanet_R_50_FPN.yaml) | 34.01M | 33.79M | 2.500 | 64x96 | aten::add x3, aten::sigmoid x1 |"
            in lines)
    assert "| torchvision retinanet_resnet50_fpn | 34.01M | 33.79M | - | - | - |" in lines
    assert lines[-1] == "Last timed iteration: ours: loss_cls 1.235; torchvision: loss_cls 2."


def test_flops_and_data_reports():
    flops = markdown(_report("flops", models={"ours": {"parameters": {"total": 1_000_000, "trainable": 0},
                                                       "flops": {**FLOPS, "uncounted_ops": {}}}}))
    assert "timed iterations" not in flops and "iterations/s" not in flops
    assert flops.splitlines()[-3:] == ["| ours (retinanet_R_50_FPN.yaml) | 1.00M | 0.00M | 2.500 | 64x96 | none |", "",
                                       "FLOPs: one multiply-add counts as one flop."]
    assert size_table(_report(models={}))[-1] == "FLOPs: one multiply-add counts as one flop."
    data = markdown(_report("data", input="dataset", image_size=None, datasets=["a", "b"], data={
        "images_per_batch": 2.0, "batches_per_s": 10.0, "images_per_s": 20.0, "s_per_batch": 0.05,
        "s_per_batch_iqr": [0.04, 0.06], "peak_memory_mib": 700.6}))
    assert "`configs/torchvision/retinanet_R_50_FPN.yaml`, task data, input dataset, 3 timed iterations" in data
    assert data.splitlines()[-1] == "| a, b | 2.0 | 10.00 | 20.00 | 0.0500 (0.0400-0.0600) | 701 |"


def test_time_to_accuracy_summary():
    report = {"setup_seconds": 1.25, "json": "out/time_to_accuracy.json", "png": "out/time_to_accuracy.png",
              "points": [{"minutes": 0.5, "iteration": 10, "images": 80, "bbox/AP": 12.5, "bbox/AP50": 30.0,
                          "bbox/AP75": 10.0}]}
    lines = time_to_accuracy_summary(report, "configs/x.yaml").splitlines()
    assert lines[0].startswith("Time to accuracy of configs/x.yaml (torch ") and lines[0].endswith(
        "setup 1.2 s before minute 0):")
    assert "| minutes | iteration | images | AP | AP50 | AP75 |" in lines and any(l.startswith("| 0.50 | 10 | 80 |")
                                                                                   for l in lines)
    assert lines[-1] == "Written: out/time_to_accuracy.json and out/time_to_accuracy.png"


def test_write_json_is_atomic_and_load_report_reads_it_back(tmp_path):
    path = str(tmp_path / "runs" / "report.json")
    write_json(path, {"task": "eval", "models": {"ours": {}}})
    assert os.listdir(tmp_path / "runs") == ["report.json"]  # no temporary file left behind
    assert open(path).read().startswith('{\n  "task": "eval"')  # indented
    assert load_report(path, "eval") == {"task": "eval", "models": {"ours": {}}}


@pytest.mark.parametrize("content, task, message", [
    (None, "eval", "cannot read a JSON report"),
    ("not json", "eval", "cannot read a JSON report"),
    ('{"task": "eval"}', "eval", "is not a report written by --json (no 'models')"),
    ('{"task": "eval", "models": {}}', "train", "has task 'eval' but this run has 'train'"),
    ('{"task": "flops", "models": {}}', "flops", "--relative-to applies to --task train and --task eval, not flops"),
])
def test_load_report_refuses_what_it_cannot_compare(tmp_path, content, task, message):
    path = tmp_path / "other.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BenchmarkError) as error:
        load_report(str(path), task)
    assert message in str(error.value)

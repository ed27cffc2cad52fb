"""retinadet.benchmark.tasks run end to end on tiny inputs: the reports of the train, eval, flops and data
tasks, the torchvision comparisons (RetinaNet and Faster R-CNN), relative speeds and time to accuracy."""
import json
import math
import statistics

import pytest
import torch

from retinadet.benchmark import BenchmarkError, BenchmarkOptions
from retinadet.benchmark.inputs import synthetic_batches
from retinadet.benchmark.report import markdown, time_to_accuracy_summary, write_json
from retinadet.benchmark.tasks import run_benchmark, run_time_to_accuracy_task
from retinadet.engine import DefaultTrainer
from retinadet.modeling import build_model
from tests.benchmark.benchmark_checks import (
    COCO,
    QUICK,
    RCNN_TINY,
    RCNN_TORCHVISION,
    SHAPES_TINY,
    check_model_figures,
    check_model_size,
    frozen_config,
    size_row,
)

TINY = {"size": (64, 96), "iters": 2, "warmup": 1}


def test_train_on_synthetic_batches():
    report = run_benchmark(BenchmarkOptions(QUICK, "train", **TINY, opts=["SOLVER.IMS_PER_BATCH", "2"]))
    assert (report["task"], report["input"], report["image_size"]) == ("train", "synthetic", [64, 96])
    assert list(report["models"]) == ["ours"] and report["threads"] == 1
    assert report["opts"] == ["SOLVER.IMS_PER_BATCH", "2"] and (report["iters"], report["warmup"]) == (2, 1)
    ours = report["models"]["ours"]
    check_model_figures(ours, images_per_iteration=2)  # the SOLVER.IMS_PER_BATCH override
    assert set(ours["last"]) == {"loss_cls", "loss_box_reg"}
    assert all(math.isfinite(v) and v >= 0 for v in ours["last"].values())
    # Parameters of the model as the trainer builds it; FLOPs of one 64 x 96 image's inference.
    check_model_size(ours, DefaultTrainer.build_model(frozen_config(QUICK)))
    assert "retinadet::batched_nms" in ours["flops"]["uncounted_ops"]
    assert "one multiply-add counts as one flop" in report["flop_convention"]
    printed = markdown(report)
    assert printed.startswith(f"torch {torch.__version__}, device cpu, 1 threads; 1-min load average")
    assert "| ours (retinanet_R_18_synthetic.yaml) | 2 | " in printed
    assert size_row("ours (retinanet_R_18_synthetic.yaml)", ours) in printed
    assert "retinadet::batched_nms x1" in printed and f"FLOPs: {report['flop_convention']}." in printed


def test_eval_on_synthetic_batches():
    report = run_benchmark(BenchmarkOptions(QUICK, "eval", **TINY, opts=["TEST.IMS_PER_BATCH", "3"]))
    ours = report["models"]["ours"]
    check_model_figures(ours, images_per_iteration=3)
    # Random weights: between none and DETECTIONS_PER_IMAGE (100) detections per image.
    assert 0 <= ours["last"]["detections_per_image"] <= 100


def test_data_loader_on_the_tiny_shapes_set(tmp_path):
    report = run_benchmark(BenchmarkOptions(SHAPES_TINY, "data", iters=3, warmup=1,
                                            opts=["DATASETS.ROOT", str(tmp_path / "datasets")]))
    assert report["input"] == "dataset" and report["datasets"] == ["shapes_train_tiny"]
    d = report["data"]
    assert len(d["times"]) == 3 and all(t > 0 for t in d["times"])
    # 3 batches of SOLVER.IMS_PER_BATCH = 2 images over one span: images/s is exactly 2 x batches/s.
    assert d["images_per_batch"] == 2
    assert d["images_per_s"] == pytest.approx(2 * d["batches_per_s"])
    assert d["s_per_batch"] == pytest.approx(statistics.median(d["times"]))
    # The span holds the 3 timed batches, so it is at least their sum.
    assert 3 / d["batches_per_s"] >= sum(d["times"])
    assert d["peak_memory_mib"] > 0
    assert "| shapes_train_tiny | 2.0 | " in markdown(report)


def test_compare_with_torchvision_on_tiny_eval():
    report = run_benchmark(BenchmarkOptions(COCO, "eval", compare_torchvision=True, **TINY))
    assert list(report["models"]) == ["ours", "torchvision"]
    assert report["torchvision"] and report["torchvision_model"] == "retinanet_resnet50_fpn"
    ours, reference = report["models"]["ours"], report["models"]["torchvision"]
    for f in (ours, reference):
        check_model_figures(f, images_per_iteration=1)
    for f in (ours, reference):
        check_model_size(f)
    ratio = report["ours_over_torchvision"]
    assert ratio["time"] == pytest.approx(ours["s_per_iteration"] / reference["s_per_iteration"])
    paired = sorted(o / r for o, r in zip(ours["times"], reference["times"]))
    # Two paired ratios a <= b: quartiles a + (b - a) / 4 and a + 3 (b - a) / 4.
    expected = [paired[0] + (paired[1] - paired[0]) * q for q in (0.25, 0.75)]
    assert ratio["time_iqr"] == pytest.approx(expected)
    assert ratio["peak_memory"] == pytest.approx(ours["peak_memory_mib"] / reference["peak_memory_mib"])
    printed = markdown(report)
    assert "| torchvision retinanet_resnet50_fpn | 1 | " in printed
    assert f"| eval | {ratio['time']:.3f} (" in printed


def test_compare_faster_rcnn_with_torchvision_on_tiny_training(monkeypatch):
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN as TorchvisionGeneralizedRCNN

    seen = []
    original = TorchvisionGeneralizedRCNN.forward

    def spy(self, images, targets=None):
        if targets is not None:
            seen.append([t["labels"].tolist() for t in targets])
        return original(self, images, targets)

    monkeypatch.setattr(TorchvisionGeneralizedRCNN, "forward", spy)
    report = run_benchmark(BenchmarkOptions(RCNN_TORCHVISION, "train", compare_torchvision=True, no_flops=True,
                                            size=(64, 96), iters=2, warmup=0, opts=["SOLVER.IMS_PER_BATCH", "1"]))
    assert report["torchvision_model"] == "fasterrcnn_resnet50_fpn"
    ours, reference = report["models"]["ours"], report["models"]["torchvision"]
    for f in (ours, reference):
        check_model_figures(f, images_per_iteration=1)
    assert set(reference["last"]) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(math.isfinite(v) for f in (ours, reference) for v in f["last"].values())
    ratio = report["ours_over_torchvision"]["time"]
    assert ratio == pytest.approx(ours["s_per_iteration"] / reference["s_per_iteration"])
    assert "| torchvision fasterrcnn_resnet50_fpn | 1 | " in markdown(report)
    # torchvision got the same batches with each label k (0..K-1 in ours) as k + 1 (0 is its background).
    batches = synthetic_batches(frozen_config(RCNN_TORCHVISION), 2, 1, (64, 96))
    assert seen == [[(x["labels"] + 1).tolist() for x in b] for b in batches]


def test_flops_task_reports_sizes_only():
    report = run_benchmark(BenchmarkOptions(RCNN_TINY, "flops", size=(64, 96)))
    assert (report["task"], report["input"], report["image_size"]) == ("flops", "synthetic", [64, 96])
    assert report["meta_architecture"] == "GeneralizedRCNN"
    ours = report["models"]["ours"]
    assert set(ours) == {"parameters", "flops"}
    torch.manual_seed(0)
    check_model_size(ours, build_model(frozen_config(RCNN_TINY)))
    # The box head's fc layers and ROIAlign on the FPN levels ran.
    assert ours["flops"]["by_operator"]["linear"] > 0 and ours["flops"]["uncounted_ops"]["torchvision::roi_align"] > 0
    printed = markdown(report)
    assert size_row("ours (faster_rcnn_R_18_shapes_tiny.yaml)", ours) in printed
    assert "timed iterations" not in printed and "iterations/s" not in printed


def test_no_flops_keeps_the_parameters():
    report = run_benchmark(BenchmarkOptions(QUICK, "eval", no_flops=True, **TINY))
    ours = report["models"]["ours"]
    assert ours["flops"] is None and ours["parameters"]["total"] > 0
    check_model_figures(ours, images_per_iteration=1)
    assert "| ours (retinanet_R_18_synthetic.yaml) | {:.2f}M | {:.2f}M | - | - | - |".format(
        ours["parameters"]["total"] / 1e6, ours["parameters"]["trainable"] / 1e6) in markdown(report)


def test_relative_to_an_earlier_run(tmp_path):
    # RetinaNet, then Faster R-CNN on the same 64 x 96 images relative to it.
    first = run_benchmark(BenchmarkOptions(QUICK, "eval", no_flops=True, **TINY))
    earlier = str(tmp_path / "retinanet.json")
    write_json(earlier, first)
    second = run_benchmark(BenchmarkOptions(RCNN_TINY, "eval", no_flops=True, input="synthetic", relative_to=earlier,
                                            **TINY))
    relative = second["relative"]
    assert relative["other_config_file"] == QUICK
    assert relative["time"] == {"ours": pytest.approx(second["models"]["ours"]["s_per_iteration"]
                                                      / first["models"]["ours"]["s_per_iteration"])}
    printed = markdown(second)
    assert "| s/iteration: this / retinanet_R_18_synthetic.yaml | ours (faster_rcnn_R_18_shapes_tiny.yaml) |" in printed
    assert f"| eval | {relative['time']['ours']:.3f} |" in printed
    # A report of another task is refused before anything is timed.
    with pytest.raises(BenchmarkError, match="has task 'eval' but this run has 'train'"):
        run_benchmark(BenchmarkOptions(RCNN_TINY, "train", relative_to=earlier, **TINY))


def test_time_to_accuracy_task_end_to_end(tmp_path):
    out = tmp_path / "tta"
    report = run_time_to_accuracy_task(BenchmarkOptions(
        SHAPES_TINY, "time-to-accuracy", interval=0.0001,
        opts=["DATASETS.ROOT", str(tmp_path / "data"), "OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "3",
              "TRAIN.LOSS_CURVE", "False"]))
    written = json.loads((out / "time_to_accuracy.json").read_text())["points"]
    assert [p["minutes"] for p in written] == [p["minutes"] for p in report["points"]]
    # An interval shorter than any step: an evaluation after every iteration, and none repeated at the end.
    assert [p["iteration"] for p in report["points"]] == [1, 2, 3]
    assert [p["images"] for p in report["points"]] == [2, 4, 6]  # IMS_PER_BATCH 2 of the tiny config
    minutes = [p["minutes"] for p in report["points"]]
    assert minutes == sorted(minutes) and minutes[0] > 0
    assert all(0.0 <= p["bbox/AP"] <= 100.0 or math.isnan(p["bbox/AP"]) for p in report["points"])
    assert (out / "time_to_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    printed = time_to_accuracy_summary(report, SHAPES_TINY)
    assert "| minutes | iteration | images | AP | AP50 | AP75 |" in printed and "| 3 | 6 |" in printed


@pytest.mark.parametrize("options, message", [
    (BenchmarkOptions(SHAPES_TINY, "time-to-accuracy", interval=0), "--interval and --minutes must be positive"),
    (BenchmarkOptions(SHAPES_TINY, "time-to-accuracy", compare_torchvision=True), "apply to --task train and eval"),
    (BenchmarkOptions(QUICK, "time-to-accuracy"), "evaluates on DATASETS.TEST; " + QUICK + " has none."),
])
def test_time_to_accuracy_refusals(options, message):
    with pytest.raises(BenchmarkError) as error:
        run_time_to_accuracy_task(options)
    assert message in str(error.value)
    with pytest.raises(BenchmarkError, match="time-to-accuracy is run_time_to_accuracy_task"):
        run_benchmark(options)

"""retinadet.benchmark.figures: rates and ratios of timed runs, and speeds relative to an earlier report,
checked against figures computed by hand."""
import pytest

from retinadet.benchmark import BenchmarkError
from retinadet.benchmark.figures import compare, figures, relative_speed
from retinadet.benchmark.timing import TimedRun


def test_figures_and_ratio_by_hand():
    ours = TimedRun(times=[2.0, 4.0, 1.0], last={"loss_cls": 0.5}, peak_mib=300.0, extra_mib=60.0)
    reference = TimedRun(times=[1.0, 2.0, 2.0], peak_mib=200.0, extra_mib=40.0)
    f = figures(ours, images_per_iteration=2)
    # Median of 1, 2, 4 s is 2 s: 0.5 iterations/s, x 2 images = 1 image/s, 1 s/image; quartiles 1.5 and 3.
    assert (f["s_per_iteration"], f["iterations_per_s"], f["images_per_s"], f["s_per_image"]) == (2.0, 0.5, 1.0, 1.0)
    assert f["s_per_iteration_iqr"] == [1.5, 3.0]
    assert (f["peak_memory_mib"], f["step_extra_memory_mib"], f["images_per_iteration"]) == (300.0, 60.0, 2)
    assert f["times"] == [2.0, 4.0, 1.0] and f["last"] == {"loss_cls": 0.5}
    ratio = compare(f, figures(reference, images_per_iteration=2))
    # Medians 2 / 2 = 1; paired ratios 2, 2, 0.5 -> sorted 0.5, 2, 2 -> quartiles 1.25 and 2; memory 1.5 both.
    assert ratio == {"time": 1.0, "time_iqr": [1.25, 2.0], "peak_memory": 1.5, "step_extra_memory": 1.5}


def test_unknown_step_extra_memory_gives_no_ratio():
    ours = figures(TimedRun(times=[1.0], peak_mib=10.0, extra_mib=None), 1)
    reference = figures(TimedRun(times=[2.0], peak_mib=20.0, extra_mib=5.0), 1)
    ratio = compare(ours, reference)
    assert ratio["step_extra_memory"] is None and ratio["time"] == 0.5 and ratio["peak_memory"] == 0.5


def _report(task="train", ours=2.0, torchvision=None, images=2, size=(64, 96)):
    models = {"ours": {"s_per_iteration": ours, "images_per_iteration": images}}
    if torchvision is not None:
        models["torchvision"] = {"s_per_iteration": torchvision, "images_per_iteration": images}
    return {"task": task, "image_size": list(size), "device": "cpu", "threads": 1, "models": models,
            "config_file": "configs/x.yaml"}


def test_relative_speed_by_hand():
    # RetinaNet 2 s (torchvision's 1.6 s) against Faster R-CNN 2.5 s (torchvision's 2.5 s): ours 0.8,
    # torchvision's 0.64, and 0.8 / 0.64 = 1.25 = (2 / 1.6) / (2.5 / 2.5), the quotient of the runs'
    # ours/torchvision ratios.
    this, other = _report(ours=2.0, torchvision=1.6), _report(ours=2.5, torchvision=2.5)
    relative = relative_speed(this, other, "other.json")
    assert relative["time"] == pytest.approx({"ours": 0.8, "torchvision": 0.64})
    assert relative["ours_over_torchvision"] == pytest.approx(1.25)
    assert (relative["other"], relative["other_config_file"]) == ("other.json", "configs/x.yaml")
    assert "ours_over_torchvision" not in relative_speed(_report(), other, "other.json")


@pytest.mark.parametrize("other, message", [
    (_report(size=(128, 96)), "has image_size [128, 96] but this run has [64, 96]"),
    (_report(task="eval"), "has task 'eval' but this run has 'train'"),
    (_report(images=1), "ran ours on 1 images per iteration, this run on 2"),
    ({**_report(), "models": {"theirs": {}}}, "none of this run's ['ours']"),
    ({**_report(), "models": {"ours": {"parameters": {}}}}, "has no timing for 'ours' (a --task flops report?)"),
])
def test_relative_speed_refuses_different_runs(other, message):
    with pytest.raises(BenchmarkError) as error:
        relative_speed(_report(), other, "other.json")
    assert message in str(error.value)

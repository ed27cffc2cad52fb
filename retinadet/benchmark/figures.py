"""The speed figures of tools/benchmark.py's reports: rates, median and interquartile range of one model's
timed steps, the ours / torchvision ratios of one run, and this run's speed relative to an earlier report."""
from typing import Any, Dict

from .options import BenchmarkError
from .timing import TimedRun, quartiles

__all__ = ["compare", "figures", "relative_speed"]


def figures(run: TimedRun, images_per_iteration: float) -> Dict[str, Any]:
    """The report entry of one model's timed steps (``run``, each on ``images_per_iteration`` images on
    average): iterations/s (1 / median seconds per iteration), images/s, s/iteration (median and IQR),
    s/image, peak and step-extra memory (MiB), every time and the last step's output."""
    median = run.median
    return {
        "iterations_per_s": 1.0 / median,
        "images_per_s": images_per_iteration / median,
        "images_per_iteration": images_per_iteration,
        "s_per_iteration": median,
        "s_per_iteration_iqr": list(run.quartiles),
        "s_per_image": median / images_per_iteration,
        "peak_memory_mib": run.peak_mib,
        "step_extra_memory_mib": run.extra_mib,
        "times": run.times,
        "last": run.last,
    }


def compare(ours: Dict[str, Any], reference: Dict[str, Any]) -> Dict[str, Any]:
    """ours / torchvision from two ``figures`` entries of one run: the ratio of the median times, the IQR of
    the paired per-iteration ratios, and the ratios of peak and step-extra memory (the latter None when
    unknown)."""
    paired = [o / r for o, r in zip(ours["times"], reference["times"])]
    extra = (ours["step_extra_memory_mib"], reference["step_extra_memory_mib"])
    return {
        "time": ours["s_per_iteration"] / reference["s_per_iteration"],
        "time_iqr": list(quartiles(paired)),
        "peak_memory": ours["peak_memory_mib"] / reference["peak_memory_mib"],
        "step_extra_memory": extra[0] / extra[1] if None not in extra and extra[1] > 0 else None,
    }


def relative_speed(report: Dict[str, Any], other: Dict[str, Any], path: str) -> Dict[str, Any]:
    """This report's seconds per iteration over those of ``other`` (the report read from ``path``), per
    model both hold, and (when both hold ours and torchvision's) ours' ratio over torchvision's ratio.

    Raises BenchmarkError unless ``other`` has the same task, image size, images per iteration, device
    and threads."""
    for key in ("task", "image_size", "device", "threads"):
        if other.get(key) != report[key]:
            raise BenchmarkError(
                f"--relative-to {path!r} has {key} {other.get(key)!r} but this run has {report[key]!r}; compare "
                f"runs of the same task, --size, device and --threads."
            )
    names = [name for name in report["models"] if name in other["models"]]
    if not names:
        raise BenchmarkError(f"--relative-to {path!r} holds models {list(other['models'])}, none of this run's "
                             f"{list(report['models'])}.")
    time = {}
    for name in names:
        this, that = report["models"][name], other["models"][name]
        if "s_per_iteration" not in that:
            raise BenchmarkError(f"--relative-to {path!r} has no timing for {name!r} (a --task flops report?).")
        if that["images_per_iteration"] != this["images_per_iteration"]:
            raise BenchmarkError(
                f"--relative-to {path!r} ran {name} on {that['images_per_iteration']} images per iteration, this "
                f"run on {this['images_per_iteration']}; give both the same batch size."
            )
        time[name] = this["s_per_iteration"] / that["s_per_iteration"]
    result = {"other": path, "other_config_file": other.get("config_file"), "time": time}
    if "ours" in time and "torchvision" in time:
        result["ours_over_torchvision"] = time["ours"] / time["torchvision"]
    return result

"""Reading what a finished training run left behind: final COCO metrics and step times from
OUTPUT_DIR/metrics.json, inference time, peak memory and a divergence from its console output.

The engine persists the metrics and step times in metrics.json; the inference time per image (the
evaluation loop's "Total inference time" line) and the peak memory (the metric printer's
``max_mem``) are only logged, so they are parsed from the run's console output."""
import math
import re
import statistics
from typing import Any, Dict, List, Optional

__all__ = [
    "METRIC_NAMES",
    "NUM_TIMING_WARMUP",
    "divergence_iteration",
    "final_metrics",
    "inference_seconds_per_image",
    "is_nan",
    "last_iteration",
    "peak_memory_mib",
    "train_iters_per_second",
]

# COCO box metrics, in COCOEvaluator's order and names (percent).
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")

# Training steps left out of the speed: the first ones pay for lazy set-up (allocator growth,
# loader start, kernel selection).
NUM_TIMING_WARMUP = 5

_NON_FINITE = re.compile(r"Loss became non-finite at iteration (\d+)")
_INFERENCE = re.compile(
    r"Total inference time: \S+ \(([0-9.eE+-]+) s/img per process over (\d+) timed images.*?"
    r"model alone ([0-9.eE+-]+) s/img\)"
)
_MAX_MEM = re.compile(r"max_mem: ([0-9.]+)M")


def _number(value: Any) -> float:
    """A metrics.json value as a float; null (written for NaN) becomes NaN."""
    return float("nan") if value is None else float(value)


def final_metrics(lines: List[Dict[str, Any]]) -> Optional[Dict[str, float]]:
    """The last evaluation in metrics.json ``lines``: ``{"AP": .., "AP50": .., ..., "APl": ..}`` (percent,
    NaN where undefined), from ``bbox/AP`` (one test set) or ``<first set>/bbox/AP`` (several).
    None when no line holds an evaluation."""
    for line in reversed(lines):
        keys = sorted(k for k in line if k == "bbox/AP" or k.endswith("/bbox/AP"))
        if keys:
            prefix = keys[0][: -len("AP")]
            return {name: _number(line.get(prefix + name)) for name in METRIC_NAMES}
    return None


def last_iteration(lines: List[Dict[str, Any]]) -> Optional[int]:
    """The highest ``iteration`` with a training loss in metrics.json ``lines`` (None if none)."""
    iterations = [int(line["iteration"]) for line in lines if "total_loss" in line and "iteration" in line]
    return max(iterations) if iterations else None


def train_iters_per_second(lines: List[Dict[str, Any]], window: int, skip: int = NUM_TIMING_WARMUP) -> Optional[float]:
    """Training iterations per second: 1 / the mean of the step times (``time``: data, forward,
    backward and optimizer, without the hooks) in metrics.json ``lines``.

    Each ``time`` value is the median over the ``window`` (TRAIN.LOG_PERIOD) steps ending at its
    iteration; values whose window covers one of the first ``skip`` steps are left out. Runs too
    short for that fall back to the values after the first ``skip`` steps, then to all. None when
    there is no step time."""
    times = [(int(line["iteration"]), float(line["time"])) for line in lines
             if line.get("time") is not None and "iteration" in line]
    window = max(int(window), 1)
    for keep in (lambda it: it - window + 1 >= skip, lambda it: it >= skip, lambda it: True):
        chosen = [t for it, t in times if keep(it)]
        if chosen:
            mean = statistics.fmean(chosen)
            return 1.0 / mean if mean > 0 else None
    return None


def inference_seconds_per_image(log_text: str) -> Optional[Dict[str, float]]:
    """From the last "Total inference time" line of ``log_text``: ``{"model": s/img of the model
    alone, "total": s/img including loading and the evaluator, "timed_images": n}``; None without one."""
    matches = _INFERENCE.findall(log_text)
    if not matches:
        return None
    total, images, model = matches[-1]
    return {"model": float(model), "total": float(total), "timed_images": int(images)}


def peak_memory_mib(log_text: str) -> Optional[float]:
    """The largest ``max_mem: <n>M`` of the training log lines in ``log_text`` (MiB: peak CUDA memory
    allocated on a GPU, peak resident memory on CPU); None without one."""
    values = [float(v) for v in _MAX_MEM.findall(log_text)]
    return max(values) if values else None


def divergence_iteration(log_text: str) -> Optional[int]:
    """The iteration of a "Loss became non-finite at iteration N" error in ``log_text``, else None."""
    match = _NON_FINITE.search(log_text)
    return int(match.group(1)) if match else None


def is_nan(value: Optional[float]) -> bool:
    """True for None or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))

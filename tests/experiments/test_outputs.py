"""Reading run outputs: final metrics and step times from metrics.json lines, and the inference time,
peak memory and divergence lines, produced here by the engine's own code so a change of their
wording breaks these tests."""
import contextlib
import logging
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from retinadet.engine.hooks import NonFiniteLossGuard
from retinadet.evaluation import inference_on_dataset
from retinadet.evaluation.evaluator import DatasetEvaluator
from retinadet.experiments import outputs
from retinadet.utils.events import EventStorage
from retinadet.utils.writers import CommonMetricPrinter


@contextlib.contextmanager
def _captured(logger_name):
    """Text logged on ``logger_name`` (whatever its propagation) inside the block."""
    lines = []

    class _Handler(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    log = logging.getLogger(logger_name)
    handler, level = _Handler(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def test_final_metrics_takes_the_last_evaluation_and_reads_null_as_nan():
    lines = [
        {"iteration": 9, "total_loss": 1.0, "time": 0.1},
        {"iteration": 9, "bbox/AP": 10.0, "bbox/AP50": 20.0, "bbox/AP75": 5.0, "bbox/APs": 1.0, "bbox/APm": 2.0,
         "bbox/APl": 3.0},
        {"iteration": 19, "total_loss": 0.5},
        {"iteration": 19, "bbox/AP": 30.5, "bbox/AP50": 50.0, "bbox/AP75": 25.0, "bbox/APs": 4.0, "bbox/APm": None,
         "bbox/APl": None, "bbox/AP-circle": 99.0},
    ]
    m = outputs.final_metrics(lines)
    assert m["AP"] == 30.5 and m["AP50"] == 50.0 and m["AP75"] == 25.0 and m["APs"] == 4.0
    assert math.isnan(m["APm"]) and math.isnan(m["APl"])
    assert list(m) == ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert outputs.final_metrics(lines[:1]) is None
    assert outputs.last_iteration(lines) == 19


def test_final_metrics_with_several_test_sets_uses_the_first_one():
    line = {"iteration": 3, "b_set/bbox/AP": 2.0, "a_set/bbox/AP": 1.0, "a_set/bbox/AP50": 7.0}
    m = outputs.final_metrics([line])
    assert m["AP"] == 1.0 and m["AP50"] == 7.0 and math.isnan(m["AP75"])


def test_train_speed_leaves_out_the_first_steps():
    # Window 1: five slow set-up steps of 1 s, then five of 0.5 s -> 2 it/s.
    lines = [{"iteration": i, "time": 1.0 if i < 5 else 0.5} for i in range(10)]
    assert outputs.train_iters_per_second(lines, window=1) == pytest.approx(2.0)
    # Window 4 (values at iterations 3, 7, 11, 15): the windows of iterations 3 and 7 cover steps
    # 0-3 and 4-7, which include the first five; 11 and 15 remain: 1 / mean(0.2, 0.3) = 4 it/s.
    lines = [{"iteration": 3, "time": 9.0}, {"iteration": 7, "time": 5.0}, {"iteration": 11, "time": 0.2},
             {"iteration": 15, "time": 0.3}, {"iteration": 15, "bbox/AP": 1.0}]
    assert outputs.train_iters_per_second(lines, window=4) == pytest.approx(4.0)


def test_train_speed_of_short_runs_falls_back():
    # Window 4, values at 3 and 7 only: no window is clear of the first five steps; the value at
    # iteration 7 (>= 5) is used.
    lines = [{"iteration": 3, "time": 9.0}, {"iteration": 7, "time": 0.25}]
    assert outputs.train_iters_per_second(lines, window=4) == pytest.approx(4.0)
    # Fewer than five steps: all of them.
    lines = [{"iteration": 0, "time": 0.5}, {"iteration": 1, "time": 0.3}]
    assert outputs.train_iters_per_second(lines, window=1) == pytest.approx(1 / 0.4)
    assert outputs.train_iters_per_second([{"iteration": 0, "total_loss": 1.0}], window=1) is None


class _Model(nn.Module):
    def forward(self, inputs):
        return [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
                for _ in inputs]


def test_inference_time_is_read_from_the_evaluation_loop_line():
    loader = [[{"image_id": i}] for i in range(8)]
    with _captured("retinadet.evaluation") as lines:
        inference_on_dataset(_Model(), loader, DatasetEvaluator(), log_period_s=1000.0)
    text = "\n".join(["unrelated line"] + lines)
    parsed = outputs.inference_seconds_per_image(text)
    assert parsed is not None
    # 8 batches of one image, the first five untimed.
    assert parsed["timed_images"] == 3
    assert 0 < parsed["model"] <= parsed["total"] < 1.0
    assert outputs.inference_seconds_per_image("no timing here") is None


def test_the_last_inference_line_wins():
    text = ("Total inference time: 0:00:01 (0.500000 s/img per process over 4 timed images, on 1 processes; "
            "model alone 0.250000 s/img).\n"
            "Total inference time: 0:00:02 (0.040000 s/img per process over 11 timed images, on 1 processes; "
            "model alone 0.030000 s/img).")
    assert outputs.inference_seconds_per_image(text) == {"model": 0.03, "total": 0.04, "timed_images": 11}


def test_peak_memory_is_read_from_the_metric_printer_line():
    with _captured("retinadet.engine") as lines, EventStorage(0) as storage:
        printer = CommonMetricPrinter(max_iter=10, window=1)
        storage.put_scalars(total_loss=1.0, time=0.1)
        printer.write()
    text = "\n".join(lines)
    mem = outputs.peak_memory_mib(text)
    assert mem is not None and mem > 0
    assert outputs.peak_memory_mib("iter: 1/10 max_mem: 120M\niter: 2/10 max_mem: 135M\n") == 135.0
    assert outputs.peak_memory_mib("nothing") is None


def test_divergence_iteration_is_read_from_the_guard_error():
    guard = NonFiniteLossGuard()
    guard.trainer = SimpleNamespace(loss_dict={"loss_cls": torch.tensor(float("nan"))}, iter=37, batch=[],
                                    device=torch.device("cpu"))
    with pytest.raises(FloatingPointError) as info:
        guard.after_backward()
    text = f"Traceback (most recent call last):\n  ...\nFloatingPointError: {info.value}\n"
    assert outputs.divergence_iteration(text) == 37
    assert outputs.divergence_iteration("RuntimeError: out of memory") is None

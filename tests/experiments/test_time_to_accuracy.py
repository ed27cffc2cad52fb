"""Time to accuracy: evaluations at training-clock points (evaluation time excluded), the budget stop,
the table and the picture."""
import os

import pytest

from retinadet.experiments import time_to_accuracy as tta


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class _Trainer:
    def __init__(self):
        self.completed = 0
        self.exception = None
        self.stopped = False

    def request_stop(self):
        self.stopped = True


def _run(monkeypatch, step_s, eval_s, steps, interval_s, budget_s=None):
    """Drive a TimedEvaluation by hand: each step takes ``step_s`` seconds, each evaluation ``eval_s``."""
    clock = _Clock()
    monkeypatch.setattr(tta.time, "perf_counter", clock)
    trainer = _Trainer()

    def evaluate():
        clock.now += eval_s
        return {"bbox": {"AP": float(trainer.completed), "AP50": 2.0 * trainer.completed}}

    hook = tta.TimedEvaluation(interval_s, evaluate, budget_s, images_per_iter=4)
    hook.trainer = trainer
    hook.before_train()
    for _ in range(steps):
        clock.now += step_s
        trainer.completed += 1
        hook.after_step()
        if trainer.stopped:
            break
    hook.after_train()
    return hook, trainer


def test_points_fall_on_the_training_clock_not_the_wall_clock(monkeypatch):
    # 10 s steps, 60 s interval, evaluations that take 25 s each: evaluations after steps 6 and 12
    # (60 and 120 training seconds), not earlier because of the time spent evaluating.
    hook, trainer = _run(monkeypatch, step_s=10.0, eval_s=25.0, steps=13, interval_s=60.0)
    assert [p["iteration"] for p in hook.points] == [6, 12, 13]  # the last one: training ended
    assert [p["minutes"] for p in hook.points] == pytest.approx([1.0, 2.0, 130.0 / 60])
    assert [p["images"] for p in hook.points] == [24, 48, 52]
    assert hook.points[0]["bbox/AP"] == 6.0 and hook.points[0]["bbox/AP50"] == 12.0
    assert not trainer.stopped


def test_budget_stops_training_and_evaluates_once_at_the_end(monkeypatch):
    hook, trainer = _run(monkeypatch, step_s=7.0, eval_s=100.0, steps=1000, interval_s=30.0, budget_s=60.0)
    assert trainer.stopped and trainer.completed == 9  # 63 s >= 60 s
    assert [p["iteration"] for p in hook.points] == [5, 9]  # 35 s, then the end
    assert hook.points[-1]["minutes"] == pytest.approx(63.0 / 60)


def test_no_duplicate_point_when_the_last_step_was_just_evaluated(monkeypatch):
    hook, _ = _run(monkeypatch, step_s=10.0, eval_s=1.0, steps=6, interval_s=60.0)
    assert [p["iteration"] for p in hook.points] == [6]


def test_bad_interval_and_budget():
    with pytest.raises(ValueError, match="interval must be positive; got 0"):
        tta.TimedEvaluation(0, dict)
    with pytest.raises(ValueError, match="budget must be positive; got -1"):
        tta.TimedEvaluation(1, dict, budget_s=-1)


def test_table_and_picture(tmp_path):
    points = [{"minutes": 0.5, "iteration": 10, "images": 80, "bbox/AP": 12.345, "bbox/AP50": 30.0, "bbox/AP75": 9.0},
              {"minutes": 1.5, "iteration": 30, "images": 240, "bbox/AP": 40.0}]
    table = tta.markdown_table(points).splitlines()
    assert table[2] == "| 0.50 | 10 | 80 | 12.3 | 30.0 | 9.0 |"
    assert table[3] == "| 1.50 | 30 | 240 | 40.0 | - | - |"
    png = tta.plot_time_to_accuracy(points, str(tmp_path / "curve.png"), "title")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["curve.png"]  # no temporary file left

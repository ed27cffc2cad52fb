"""Time to accuracy: train a config and evaluate it at fixed points of training wall-clock time.

The clock runs while the trainer trains (data loading, steps and the other hooks) and stops while
the model is evaluated, so each point says what that many minutes of training reached. Results go
to OUTPUT_DIR/time_to_accuracy.json (one row per evaluation) and time_to_accuracy.png (AP, AP50
and AP75 against minutes).
"""
import functools
import logging
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from retinadet.engine.hooks import EvalHook, flatten_results
from retinadet.engine.train_loop import HookBase
from retinadet.utils.file_io import atomic_write_json

from .report import save_figure

__all__ = ["TimedEvaluation", "plot_time_to_accuracy", "run_time_to_accuracy", "markdown_table"]

logger = logging.getLogger(__name__)

_CURVES = (("bbox/AP", "AP", "-"), ("bbox/AP50", "AP50", "--"), ("bbox/AP75", "AP75", ":"))


class TimedEvaluation(HookBase):
    """Evaluates every ``interval_s`` seconds of training time, once more when training ends, and
    asks the trainer to stop once ``budget_s`` seconds of training time have passed (None: train the
    whole schedule). Evaluation time is not training time.

    Args:
        interval_s: training seconds between evaluations (> 0).
        eval_function: () -> {task: {metric: value}} (e.g. the trainer's test on DATASETS.TEST).
        budget_s: stop training after this many training seconds (None = no limit).
        images_per_iter: images per iteration (all processes), to report images seen.

    ``points`` holds one dict per evaluation: {"minutes", "iteration", "images", "bbox/AP", ...}.
    """

    def __init__(self, interval_s: float, eval_function: Callable[[], Dict[str, Any]],
                 budget_s: Optional[float] = None, images_per_iter: int = 1) -> None:
        if interval_s <= 0:
            raise ValueError(f"The evaluation interval must be positive; got {interval_s} s.")
        if budget_s is not None and budget_s <= 0:
            raise ValueError(f"The time budget must be positive; got {budget_s} s.")
        self.interval_s = float(interval_s)
        self.budget_s = budget_s
        self.eval_function = eval_function
        self.images_per_iter = int(images_per_iter)
        self.points: List[Dict[str, Any]] = []
        self._trained_s = 0.0
        self._since = 0.0
        self._next = self.interval_s
        self._evaluated_at = -1

    def before_train(self) -> None:
        self._since = time.perf_counter()

    def _clock(self) -> float:
        return self._trained_s + (time.perf_counter() - self._since)

    def _evaluate(self) -> None:
        self._trained_s = self._clock()
        results = flatten_results(self.eval_function() or {})
        done = self.trainer.completed
        point = {"minutes": self._trained_s / 60.0, "iteration": done, "images": done * self.images_per_iter}
        point.update(results)
        self.points.append(point)
        self._evaluated_at = done
        logger.info("Time to accuracy: %.2f min, iteration %d: AP %.2f", point["minutes"], done,
                    point.get("bbox/AP", float("nan")))
        self._since = time.perf_counter()

    def after_step(self) -> None:
        clock = self._clock()
        if self.budget_s is not None and clock >= self.budget_s:
            self.trainer.request_stop()
            return  # the last evaluation runs in after_train
        if clock >= self._next:
            self._evaluate()
            while self._next <= self._trained_s:
                self._next += self.interval_s

    def after_train(self) -> None:
        if self.trainer.exception is None and self.trainer.completed != self._evaluated_at:
            self._evaluate()


def plot_time_to_accuracy(points: Sequence[Dict[str, Any]], png_path: str, title: str = "") -> str:
    """Draw AP, AP50 and AP75 against training minutes into ``png_path`` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    minutes = [p["minutes"] for p in points]
    for key, label, style in _CURVES:
        values = [p.get(key) for p in points]
        if any(v is not None for v in values):
            ax.plot(minutes, values, style, marker="o", markersize=3, label=label)
    ax.set_xlabel("training wall-clock time (minutes)")
    ax.set_ylabel("COCO bbox AP (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, png_path)


def markdown_table(points: Sequence[Dict[str, Any]]) -> str:
    """One row per evaluation: minutes, iteration, images seen, AP, AP50, AP75."""
    lines = ["| minutes | iteration | images | AP | AP50 | AP75 |", "|---|---|---|---|---|---|"]
    for p in points:
        ap = [p.get(k) for k, _, _ in _CURVES]
        cells = ["-" if v is None else f"{v:.1f}" for v in ap]
        lines.append(f"| {p['minutes']:.2f} | {p['iteration']} | {p['images']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_time_to_accuracy(cfg: Any, interval_minutes: float, budget_minutes: Optional[float] = None,
                         config_file: str = "") -> Dict[str, Any]:
    """Train ``cfg`` (frozen, set up with ``default_setup``) in this process, evaluating on
    DATASETS.TEST every ``interval_minutes`` of training time and at the end; stop after
    ``budget_minutes`` (None: the whole schedule). Writes OUTPUT_DIR/time_to_accuracy.{json,png} and
    returns {"config_file", "setup_seconds", "points": [...], "json", "png"}."""
    from retinadet.engine import DefaultTrainer
    from retinadet.engine.defaults import evaluate_trainer

    if not cfg.DATASETS.TEST:
        raise ValueError("Time to accuracy needs DATASETS.TEST to evaluate on; the config has none.")
    start = time.perf_counter()

    class _Trainer(DefaultTrainer):
        def build_hooks(self) -> list:
            # The timed evaluation replaces the iteration-based one; it goes where that one was.
            hooks = super().build_hooks()
            evaluate = functools.partial(evaluate_trainer, self.cfg, self)
            budget_s = None if budget_minutes is None else budget_minutes * 60.0
            self.timed = TimedEvaluation(interval_minutes * 60.0, evaluate, budget_s, cfg.SOLVER.IMS_PER_BATCH)
            return [self.timed if isinstance(h, EvalHook) else h for h in hooks]

    trainer = _Trainer(cfg)
    trainer.resume_or_load(resume=False)
    setup_seconds = time.perf_counter() - start
    trainer.train()
    points = trainer.timed.points
    report = {"config_file": config_file, "setup_seconds": setup_seconds, "points": points}
    json_path = os.path.join(cfg.OUTPUT_DIR, "time_to_accuracy.json")
    png_path = os.path.join(cfg.OUTPUT_DIR, "time_to_accuracy.png")
    atomic_write_json(json_path, report, indent=1)
    title = f"{os.path.basename(config_file) or 'config'}: setup {setup_seconds:.0f} s before minute 0"
    plot_time_to_accuracy(points, png_path, title)
    report.update(json=json_path, png=png_path)
    return report

"""Metric writers: a console line, OUTPUT_DIR/metrics.json (one JSON object per line), TensorBoard."""
import datetime
import json
import logging
import math
import os
from typing import Any, Dict, List, Optional

import torch

from retinadet.benchmark.memory import peak_memory_mb

from .events import get_event_storage
from .file_io import atomic_write

__all__ = ["CommonMetricPrinter", "EventWriter", "JSONWriter", "TensorboardWriter", "read_metrics"]


class EventWriter:
    """Writes what the current EventStorage holds: ``begin(start_iter)`` once before training,
    ``write()`` periodically, ``close()`` once."""

    def begin(self, start_iter: int) -> None:
        pass

    def write(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class CommonMetricPrinter(EventWriter):
    """Logs one line: iteration, ETA, every ``loss*`` scalar (median over the window), lr, step and
    data time, peak memory (retinadet.benchmark.memory.peak_memory_mb).

    Args:
        max_iter: the run's last iteration, for the ETA.
        window: number of iterations the losses and times are smoothed over.
        device: the model's device, for the memory figure.
    """

    def __init__(self, max_iter: int, window: int = 20, device: Optional[torch.device] = None) -> None:
        self.logger = logging.getLogger("retinadet.engine")
        self._max_iter = max_iter
        self._window = window
        self._device = device

    def _eta(self, storage, iteration: int) -> str:
        histories = storage.histories()
        if "time" not in histories or iteration >= self._max_iter - 1:
            return ""
        seconds = histories["time"].median(1000) * (self._max_iter - iteration - 1)
        return f"eta: {datetime.timedelta(seconds=int(seconds))}  "

    def write(self) -> None:
        storage = get_event_storage()
        iteration = storage.iter
        if iteration >= self._max_iter:
            return  # after the last step: only evaluation results, which have their own log lines
        histories = storage.histories()

        def median(name: str) -> str:
            return f"{histories[name].median(self._window):.4f}" if name in histories else "N/A"

        losses = "  ".join(
            f"{name}: {histories[name].median(self._window):.4g}"
            for name in sorted(histories)
            if "loss" in name and "/" not in name
        )
        lr = f"{histories['lr'].latest():.5g}" if "lr" in histories else "N/A"
        self.logger.info(
            "%siter: %d/%d  %s  time: %s  data_time: %s  lr: %s  max_mem: %.0fM",
            self._eta(storage, iteration), iteration + 1, self._max_iter, losses,
            median("time"), median("data_time"), lr, peak_memory_mb(self._device),
        )


class JSONWriter(EventWriter):
    """Appends one JSON object per line to ``json_file``: ``{"iteration": i, name: value, ...}`` for
    every scalar that got a new value since the last write (smoothable ones as the median over
    ``window``).

    ``begin(start_iter)`` with ``start_iter`` > 0 (a resumed run) first drops the lines of
    iterations at or after ``start_iter``, written by the interrupted run after its last checkpoint,
    so the file describes one history. The rewrite is atomic (retinadet.utils.file_io.atomic_write).
    """

    def __init__(self, json_file: str, window: int = 20) -> None:
        self._json_file = json_file
        self._window = window
        self._last_written: Dict[str, int] = {}
        self._file = None

    def begin(self, start_iter: int) -> None:
        if start_iter > 0 and os.path.exists(self._json_file):
            self._drop_lines_from(start_iter)
        self._file = open(self._json_file, "a")

    def _drop_lines_from(self, start_iter: int) -> None:
        kept = [line for line in read_metrics(self._json_file) if line.get("iteration", -1) < start_iter]
        with atomic_write(self._json_file) as f:
            for line in kept:
                f.write(json.dumps(line, sort_keys=True) + "\n")

    def write(self) -> None:
        storage = get_event_storage()
        by_iter: Dict[int, Dict[str, Any]] = {}
        for name, (value, iteration) in storage.latest_with_smoothing_hint(self._window).items():
            if iteration <= self._last_written.get(name, -1):
                continue
            # NaN (e.g. APl of a set without large objects) is not JSON; null keeps each line valid.
            by_iter.setdefault(iteration, {})[name] = value if math.isfinite(value) else None
            self._last_written[name] = iteration
        if self._file is None:
            self.begin(0)
        for iteration in sorted(by_iter):
            self._file.write(json.dumps({"iteration": iteration, **by_iter[iteration]}, sort_keys=True) + "\n")
        self._file.flush()
        try:
            os.fsync(self._file.fileno())
        except OSError:
            pass

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(json_file: str) -> List[Dict[str, Any]]:
    """The objects of a metrics.json, in file order; a last line cut short by a crash is skipped."""
    lines = []
    with open(json_file) as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                logging.getLogger(__name__).warning("Skipping unreadable line %d of %s: %r", number, json_file, line[:80])
    return lines


class TensorboardWriter(EventWriter):
    """Writes every new scalar to TensorBoard event files in ``log_dir``, at its own iteration."""

    def __init__(self, log_dir: str, window: int = 20) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._window = window
        self._writer = SummaryWriter(log_dir)
        self._last_written: Dict[str, int] = {}

    def write(self) -> None:
        storage = get_event_storage()
        for name, (value, iteration) in storage.latest_with_smoothing_hint(self._window).items():
            if iteration > self._last_written.get(name, -1):
                self._writer.add_scalar(name, value, iteration)
                self._last_written[name] = iteration
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

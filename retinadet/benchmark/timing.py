"""Wall-clock timing: statistics of per-call times, a timer that runs callables in turns after warm-up
rounds, a split timer for the segments of one call, and the timing loop of a data loader.

``time_in_turns`` is the one loop behind every timed comparison (tools/benchmark.py's models, the goal
benchmarks' models, ops and recipe variants): warm-up rounds first, then timed rounds in which the
callables take turns, in alternating order by default, so a change in background load hits all alike.
"""
import gc
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch

from .memory import PeakMemory

__all__ = ["LoaderTiming", "SplitTimer", "TimedRun", "median", "quantile", "quartiles", "time_call",
           "time_in_turns", "time_loader"]


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (the middle of the sorted values, or the mean of the two middle ones)."""
    return statistics.median(values)


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0 <= q <= 1) of ``values``, linearly interpolated between the sorted values."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile takes q in [0, 1]; got {q}.")
    if not values:
        raise ValueError("quantile of no values: time at least one call.")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def quartiles(values: Sequence[float]) -> Tuple[float, float]:
    """The 25th and 75th percentiles of ``values`` (their interquartile range), as ``quantile`` gives them."""
    return quantile(values, 0.25), quantile(values, 0.75)


def time_call(fn: Callable[[], object]) -> float:
    """Seconds taken by one call of ``fn()``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class SplitTimer:
    """Accumulates wall-clock seconds per named segment of one run, in ``seconds`` ({name: seconds}).

    Example::

        timer = SplitTimer()
        with timer("dense"):
            run_network()
        timer.seconds["dense"]
    """

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass
class TimedRun:
    """The timed calls of one callable: ``times`` (seconds per call), the last call's output (``last``),
    and with a PeakMemory the highest peak (``peak_mib``) and the highest rise over the memory in use when
    a call started (``extra_mib``; None when unknown)."""

    times: List[float] = field(default_factory=list)
    last: Any = None
    peak_mib: float = 0.0
    extra_mib: Optional[float] = None

    @property
    def median(self) -> float:
        """The median seconds per call."""
        return median(self.times)

    @property
    def quartiles(self) -> Tuple[float, float]:
        """The 25th and 75th percentiles of the seconds per call."""
        return quartiles(self.times)


def _synchronize(device: Optional[torch.device]) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def time_in_turns(
    calls: Mapping[str, Callable[[int], Any]],
    warmup: int,
    iters: int,
    *,
    calls_per_turn: int = 1,
    alternate: bool = True,
    settle_s: float = 0.0,
    device: Optional[torch.device] = None,
    memory: Optional[PeakMemory] = None,
    after_round: Optional[Callable[[int], None]] = None,
) -> Dict[str, TimedRun]:
    """Time named callables taking turns; returns a TimedRun per name.

    Rounds 0..warmup-1 are untimed: each callable once, in the order of ``calls``. Then, after a garbage
    collection, rounds warmup..warmup+iters-1 are timed: each callable takes a turn of ``calls_per_turn``
    timed calls, in the order of ``calls`` in even rounds and the reverse in odd ones (``alternate``), each
    turn after ``settle_s`` seconds of sleep. Every call gets the round number (e.g. to pick that round's
    batch). On a CUDA ``device`` the clock reads follow a synchronisation. With ``memory`` its peak is
    reset before each timed call and read after it. ``after_round(round)`` runs after every round.
    """
    if warmup < 0 or iters < 1 or calls_per_turn < 1 or settle_s < 0:
        raise ValueError(f"time_in_turns needs warmup >= 0, iters >= 1, calls_per_turn >= 1 and settle_s >= 0; "
                         f"got {warmup}, {iters}, {calls_per_turn}, {settle_s}.")
    names = list(calls)
    for round_index in range(warmup):
        for name in names:
            calls[name](round_index)
        if after_round is not None:
            after_round(round_index)
    _synchronize(device)
    gc.collect()
    runs = {name: TimedRun() for name in names}
    for round_index in range(warmup, warmup + iters):
        order = names if not alternate or (round_index - warmup) % 2 == 0 else names[::-1]
        for name in order:
            if settle_s:
                time.sleep(settle_s)
            for _ in range(calls_per_turn):
                _timed_call(calls[name], round_index, runs[name], device, memory)
        if after_round is not None:
            after_round(round_index)
    return runs


def _timed_call(call: Callable[[int], Any], round_index: int, run: TimedRun, device: Optional[torch.device],
                memory: Optional[PeakMemory]) -> None:
    """One timed call of ``call(round_index)``, recorded into ``run``."""
    if memory is not None:
        memory.reset()
    _synchronize(device)
    start = time.perf_counter()
    run.last = call(round_index)
    _synchronize(device)
    run.times.append(time.perf_counter() - start)
    if memory is not None:
        peak = memory.read()
        run.peak_mib = max(run.peak_mib, peak)
        if memory.base is not None:
            run.extra_mib = max(run.extra_mib or 0.0, peak - memory.base)


@dataclass
class LoaderTiming:
    """The timed batches of a data loader: ``times`` (seconds to get each batch), ``total_s`` (the whole
    timed span, which also holds the loop's own work) and ``items`` (the length of all timed batches)."""

    times: List[float]
    total_s: float
    items: int

    @property
    def batches_per_s(self) -> float:
        """Timed batches over the whole timed span."""
        return len(self.times) / self.total_s

    @property
    def items_per_s(self) -> float:
        """Items (e.g. images) of the timed batches over the whole timed span."""
        return self.items / self.total_s


def time_loader(batches: Iterator[Sequence[Any]], warmup: int, iters: int) -> LoaderTiming:
    """Take ``warmup`` batches from ``batches`` untimed (worker start-up), then time the next ``iters``.

    Rates belong over the whole span (``LoaderTiming.items_per_s``): the loader's workers prefetch, so
    single batches vary."""
    if warmup < 0 or iters < 1:
        raise ValueError(f"time_loader needs warmup >= 0 and iters >= 1; got {warmup}, {iters}.")
    for _ in range(warmup):
        next(batches)
    times, items = [], 0
    start = time.perf_counter()
    for _ in range(iters):
        begin = time.perf_counter()
        items += len(next(batches))
        times.append(time.perf_counter() - begin)
    return LoaderTiming(times=times, total_s=time.perf_counter() - start, items=items)

"""Wall-clock timing helpers for the benchmarks: split timers, medians and peak memory."""
import resource
import statistics
import sys
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List

__all__ = ["SplitTimer", "time_call", "median", "quantile", "peak_rss_mib"]


def time_call(fn: Callable[[], object]) -> float:
    """Seconds taken by one call of ``fn()``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: List[float]) -> float:
    """Median of ``values`` (the middle of the sorted list, or the mean of the two middle ones)."""
    return statistics.median(values)


def quantile(values: List[float], q: float) -> float:
    """The ``q`` quantile (0 <= q <= 1) of ``values``, linearly interpolated between sorted values."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class SplitTimer:
    """Accumulates wall-clock seconds per named segment over one timed run.

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


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0

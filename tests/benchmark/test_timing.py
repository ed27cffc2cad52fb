"""retinadet.benchmark.timing: statistics of times, the timer of callables taking turns, the split timer and
the loader timing loop."""
import sys
import time

import pytest
import torch

from retinadet.benchmark.memory import PeakMemory
from retinadet.benchmark.timing import (
    SplitTimer,
    TimedRun,
    median,
    quantile,
    quartiles,
    time_call,
    time_in_turns,
    time_loader,
)


def test_quartiles():
    assert quartiles([5.0, 1.0, 3.0, 2.0, 4.0]) == (2.0, 4.0)
    assert quartiles([1.0, 2.0]) == (1.25, 1.75)
    assert quartiles([7.0]) == (7.0, 7.0)


def test_quantile_interpolates_between_sorted_values():
    # Sorted 10, 20, 30, 40: q 0.5 sits at position 1.5, halfway between 20 and 30; q 0.9 at 2.7.
    values = [40.0, 10.0, 30.0, 20.0]
    assert quantile(values, 0.0) == 10.0 and quantile(values, 1.0) == 40.0
    assert quantile(values, 0.5) == 25.0 == median(values)
    assert quantile(values, 0.9) == pytest.approx(37.0)
    assert median([3.0, 1.0, 2.0]) == 2.0


@pytest.mark.parametrize("values, q, message", [([1.0], 1.5, r"q in \[0, 1\]; got 1.5"), ([], 0.5, "no values")])
def test_quantile_refuses_what_it_cannot_answer(values, q, message):
    with pytest.raises(ValueError, match=message):
        quantile(values, q)


def test_timed_run_statistics():
    run = TimedRun(times=[4.0, 1.0, 2.0])
    assert run.median == 2.0 and run.quartiles == (1.5, 3.0)
    assert (run.last, run.peak_mib, run.extra_mib) == (None, 0.0, None)


def test_time_call_and_split_timer_measure_the_sleeps():
    assert 0.02 <= time_call(lambda: time.sleep(0.02)) < 1.0
    timer = SplitTimer()
    for _ in range(2):
        with timer("a"):
            time.sleep(0.01)
    with timer("b"):
        pass
    # Two 10 ms segments accumulate under "a"; "b" did nothing.
    assert 0.02 <= timer.seconds["a"] < 1.0 and 0.0 <= timer.seconds["b"] < 0.01
    with pytest.raises(KeyError), timer("c"):
        raise KeyError("the segment's time is still recorded")
    assert "c" in timer.seconds


def test_time_in_turns_warms_up_then_alternates():
    log = []
    calls = {name: (lambda r, name=name: log.append((name, r)) or f"{name}{r}") for name in ("a", "b")}
    rounds = []
    runs = time_in_turns(calls, warmup=2, iters=3, after_round=rounds.append)
    # Warm-up rounds 0 and 1 in the given order; timed rounds 2, 3, 4 alternate a-b, b-a, a-b.
    assert log == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2), ("b", 3), ("a", 3), ("a", 4), ("b", 4)]
    assert rounds == [0, 1, 2, 3, 4]
    assert [len(runs[n].times) for n in "ab"] == [3, 3] and runs["a"].last == "a4" and runs["b"].last == "b4"
    assert runs["a"].peak_mib == 0.0 and runs["a"].extra_mib is None  # no memory asked for


def test_time_in_turns_in_fixed_order_with_several_calls_per_turn():
    log = []
    calls = {name: (lambda r, name=name: log.append(name)) for name in ("a", "b", "c")}
    start = time.perf_counter()
    runs = time_in_turns(calls, warmup=0, iters=2, calls_per_turn=2, alternate=False, settle_s=0.01)
    assert log == ["a", "a", "b", "b", "c", "c"] * 2
    assert all(len(run.times) == 4 for run in runs.values())
    assert time.perf_counter() - start >= 6 * 0.01  # one settling sleep before each of the 6 turns


def test_time_in_turns_times_each_call():
    runs = time_in_turns({"slow": lambda r: time.sleep(0.02), "fast": lambda r: None}, warmup=1, iters=3)
    assert all(0.02 <= t < 1.0 for t in runs["slow"].times)
    assert all(t < 0.02 for t in runs["fast"].times)
    low, high = runs["slow"].quartiles
    assert min(runs["slow"].times) <= low <= runs["slow"].median <= high <= max(runs["slow"].times)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the peak RSS is reset through /proc")
def test_time_in_turns_records_each_calls_memory_growth():
    mib = 2**20

    def grow(megabytes):
        return lambda r: float(torch.ones(megabytes * mib // 4).sum())  # float32: 4 bytes each, touched

    runs = time_in_turns({"big": grow(64), "small": grow(1)}, warmup=1, iters=2, memory=PeakMemory(torch.device("cpu")))
    # The peak is reset before every call, so the small call's growth is not the big one's.
    assert 60 <= runs["big"].extra_mib < 100
    assert 0 <= runs["small"].extra_mib < 16
    assert runs["big"].peak_mib >= runs["big"].extra_mib


@pytest.mark.parametrize("kwargs", [{"warmup": -1, "iters": 1}, {"warmup": 0, "iters": 0},
                                    {"warmup": 0, "iters": 1, "calls_per_turn": 0}])
def test_time_in_turns_refuses_bad_counts(kwargs):
    with pytest.raises(ValueError, match="time_in_turns needs warmup >= 0, iters >= 1"):
        time_in_turns({"a": lambda r: None}, **kwargs)


def test_time_loader_skips_the_warmup_and_counts_items():
    def batches():
        for size in (9, 9, 2, 3, 4):  # the two 9s are the warm-up
            time.sleep(0.01)
            yield list(range(size))

    timing = time_loader(batches(), warmup=2, iters=3)
    assert timing.items == 2 + 3 + 4 and len(timing.times) == 3
    assert all(0.01 <= t < 1.0 for t in timing.times)
    # The span holds the 3 timed batches, so it is at least their sum; the rates are over the span.
    assert timing.total_s >= sum(timing.times)
    assert timing.batches_per_s == pytest.approx(3 / timing.total_s)
    assert timing.items_per_s == pytest.approx(9 / timing.total_s)
    with pytest.raises(ValueError, match="iters >= 1; got 0, 0"):
        time_loader(batches(), warmup=0, iters=0)

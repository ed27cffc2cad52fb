"""EventStorage: the scalars of a training run, by iteration; the writers read from it."""
import collections
import statistics
from typing import Deque, Dict, Iterator, List, Optional, Tuple

__all__ = ["EventStorage", "HistoryBuffer", "get_event_storage"]

_CURRENT_STORAGE_STACK: List["EventStorage"] = []


def get_event_storage() -> "EventStorage":
    """The EventStorage of the running ``with EventStorage(...)`` block (the trainer opens one).

    Raises RuntimeError outside of such a block.
    """
    if not _CURRENT_STORAGE_STACK:
        raise RuntimeError(
            "get_event_storage() was called outside of a training run; it needs an active "
            "'with EventStorage(start_iter):' block (TrainerBase.train opens one)."
        )
    return _CURRENT_STORAGE_STACK[-1]


class HistoryBuffer:
    """The last ``max_length`` (value, iteration) pairs of one scalar, plus its global average."""

    def __init__(self, max_length: int = 1000000) -> None:
        self._data: Deque[Tuple[float, int]] = collections.deque(maxlen=max_length)
        self._count = 0
        self._global_sum = 0.0

    def update(self, value: float, iteration: int) -> None:
        """Append ``value`` recorded at ``iteration``."""
        self._data.append((float(value), int(iteration)))
        self._count += 1
        self._global_sum += float(value)

    def latest(self) -> float:
        """The most recent value."""
        return self._data[-1][0]

    def median(self, window: int) -> float:
        """Median of the last ``window`` values."""
        return statistics.median(v for v, _ in list(self._data)[-window:])

    def avg(self, window: int) -> float:
        """Mean of the last ``window`` values."""
        values = [v for v, _ in list(self._data)[-window:]]
        return sum(values) / len(values)

    def global_avg(self) -> float:
        """Mean of every value ever recorded (also those that left the window)."""
        return self._global_sum / max(self._count, 1)

    def values(self) -> List[Tuple[float, int]]:
        """(value, iteration) pairs, oldest first."""
        return list(self._data)


class EventStorage:
    """Scalars recorded during training, keyed by name, with the iteration they belong to.

    ``put_scalar(name, value)`` records into the current iteration ``storage.iter`` (the trainer
    sets it). ``latest()`` holds each name's newest value and its iteration, which the writers
    emit; ``history(name)`` keeps the values for medians and averages. ``smoothing_hint`` says
    whether a writer may smooth the value over a window (losses, times) or must print it raw
    (learning rate, evaluation results).

    Use as a context manager so ``get_event_storage()`` finds it.
    """

    def __init__(self, start_iter: int = 0) -> None:
        self.iter = int(start_iter)
        self._history: Dict[str, HistoryBuffer] = collections.defaultdict(HistoryBuffer)
        self._latest: Dict[str, Tuple[float, int]] = {}
        self._smoothing_hints: Dict[str, bool] = {}

    def put_scalar(self, name: str, value: float, smoothing_hint: bool = True, cur_iter: Optional[int] = None) -> None:
        """Record ``value`` (a number or a 0-d tensor) for ``name`` at ``cur_iter`` (default: ``self.iter``)."""
        value = float(value)
        iteration = self.iter if cur_iter is None else int(cur_iter)
        self._history[name].update(value, iteration)
        self._latest[name] = (value, iteration)
        previous = self._smoothing_hints.get(name)
        if previous is not None and previous != smoothing_hint:
            raise ValueError(f"Scalar '{name}' was put with smoothing_hint={previous} before and {smoothing_hint} now.")
        self._smoothing_hints[name] = smoothing_hint

    def put_scalars(self, smoothing_hint: bool = True, cur_iter: Optional[int] = None, **scalars: float) -> None:
        """``put_scalar`` for each keyword argument."""
        for name, value in scalars.items():
            self.put_scalar(name, value, smoothing_hint=smoothing_hint, cur_iter=cur_iter)

    def history(self, name: str) -> HistoryBuffer:
        """The HistoryBuffer of ``name``; KeyError naming the recorded names when there is none."""
        if name not in self._history:
            raise KeyError(f"No scalar named '{name}' was recorded; recorded: {sorted(self._history)}.")
        return self._history[name]

    def histories(self) -> Dict[str, HistoryBuffer]:
        """Every name's HistoryBuffer."""
        return dict(self._history)

    def latest(self) -> Dict[str, Tuple[float, int]]:
        """name -> (newest value, iteration it was recorded at)."""
        return dict(self._latest)

    def latest_with_smoothing_hint(self, window: int = 20) -> Dict[str, Tuple[float, int]]:
        """Like ``latest()``, with smoothable scalars replaced by their median over ``window`` values."""
        out = {}
        for name, (value, iteration) in self._latest.items():
            if self._smoothing_hints[name]:
                value = self._history[name].median(window)
            out[name] = (value, iteration)
        return out

    def smoothing_hints(self) -> Dict[str, bool]:
        """name -> whether it may be smoothed."""
        return dict(self._smoothing_hints)

    def step(self) -> None:
        """Move to the next iteration (the trainer calls it after each step)."""
        self.iter += 1

    def __enter__(self) -> "EventStorage":
        _CURRENT_STORAGE_STACK.append(self)
        return self

    def __exit__(self, *exc) -> None:
        assert _CURRENT_STORAGE_STACK[-1] is self
        _CURRENT_STORAGE_STACK.pop()

    def __iter__(self) -> Iterator[str]:
        return iter(self._history)

"""What a per-config benchmark run is asked to do (tools/benchmark.py's command line as a dataclass), and
the error for a request it cannot serve."""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

__all__ = ["INPUTS", "TASKS", "BenchmarkError", "BenchmarkOptions"]

TASKS = ("train", "eval", "flops", "data", "time-to-accuracy")
INPUTS = ("synthetic", "dataset")


class BenchmarkError(Exception):
    """A request the benchmark cannot serve; tools/benchmark.py reports it as a command-line error."""


@dataclass
class BenchmarkOptions:
    """One run of tools/benchmark.py: the config file, the task (one of TASKS) and the options of the
    command line of the same names (``--compare-torchvision`` is ``compare_torchvision``, ...; ``opts``
    are the trailing KEY VALUE config overrides). Raises BenchmarkError for a value no run can take."""

    config_file: str
    task: str
    input: Optional[str] = None
    size: Optional[Tuple[int, int]] = None
    compare_torchvision: bool = False
    no_flops: bool = False
    relative_to: Optional[str] = None
    device: Optional[str] = None
    iters: int = 10
    warmup: int = 2
    minutes: Optional[float] = None
    interval: float = 1.0
    opts: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise BenchmarkError(f"task {self.task!r} is not one of {', '.join(TASKS)}.")
        if self.input is not None and self.input not in INPUTS:
            raise BenchmarkError(f"input {self.input!r} is not one of {', '.join(INPUTS)}.")
        if self.iters < 1 or self.warmup < 0:
            raise BenchmarkError(f"iters must be >= 1 and warmup >= 0; got {self.iters}, {self.warmup}.")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise BenchmarkError(f"size is an image's (height, width), both >= 1; got {self.size}.")
        self.size = tuple(self.size) if self.size is not None else None
        self.opts = list(self.opts or [])

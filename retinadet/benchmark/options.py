"""What a per-config benchmark run is asked to do (tools/benchmark.py's command line as a dataclass), and
the error for a request it cannot serve."""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

__all__ = ["BACKENDS", "INPUTS", "TASKS", "BenchmarkError", "BenchmarkOptions", "parse_backend"]

TASKS = ("train", "eval", "flops", "data", "time-to-accuracy")
INPUTS = ("synthetic", "dataset")
# --backend of the eval task: MODEL.INFERENCE_BACKEND values, optionally ":bfloat16" (eager, compile, openvino).
BACKENDS = ("eager", "compile", "torchscript", "onnxruntime", "openvino")


def parse_backend(spec: str) -> Tuple[str, str]:
    """("openvino", "bfloat16") for "openvino:bfloat16", ("onnxruntime", "float32") for "onnxruntime";
    BenchmarkError for another name or precision."""
    name, _, precision = spec.partition(":")
    precision = precision or "float32"
    if name not in BACKENDS or precision not in ("float32", "bfloat16"):
        raise BenchmarkError(f"backend {spec!r} is not one of {', '.join(BACKENDS)}, optionally followed by "
                             "':bfloat16' (e.g. openvino:bfloat16).")
    return name, precision


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
    backend: Sequence[str] = ("eager",)

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
        self.backend = list(self.backend or ["eager"])
        for spec in self.backend:
            parse_backend(spec)
        if self.task != "eval" and self.backend != ["eager"]:
            raise BenchmarkError(f"--backend {' '.join(self.backend)} applies to --task eval only.")

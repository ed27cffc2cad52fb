"""Measurement: the code behind tools/benchmark.py and the goal benchmarks in benchmarks/ (see
benchmarks/README.md for what each measures and how to read it).

Primitives, one module each:

- ``timing``: median, quantiles, ``time_in_turns`` (warm-up rounds, then callables timed in alternating
  turns), ``SplitTimer``, ``time_loader`` (a data loader's timing loop).
- ``memory``: peak memory on CUDA and on the CPU (peak RSS, reset per measurement on Linux), and the
  training log's ``peak_memory_mb``.
- ``torchvision_reference``: torchvision's RetinaNet and Faster R-CNN as our models' counterparts: how they
  are built, randomised and converted into ours, and wrapped behind our model contract.
- ``model_size``: parameters and fvcore FLOPs.

The per-config benchmark (tools/benchmark.py): ``options`` (what to run), ``config``, ``inputs``
(batches), ``steps`` (train and eval steps), ``figures`` (rates and ratios), ``tasks`` (the task runners)
and ``report`` (markdown and JSON).

Importing this package loads ``options`` alone (BenchmarkError, BenchmarkOptions): torchvision and fvcore
come with the modules that need them.
"""
from .options import BenchmarkError, BenchmarkOptions

__all__ = ["BenchmarkError", "BenchmarkOptions"]

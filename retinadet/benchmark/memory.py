"""Peak memory of this process: on CUDA the allocator's peak, on the CPU the peak resident set size (RSS).

- ``peak_memory_mb(device)``: the process's peak so far (the training log's ``max_mem``).
- ``PeakMemory(device)``: a peak that can be started again (``reset()``) before each measured call, and
  the memory in use when it started (``base``), so a call's own growth is ``read() - base``. On the CPU
  under Linux the peak is the kernel's VmHWM mark, which writing "5" to /proc/self/clear_refs lowers to
  the current RSS; before that, glibc's ``malloc_trim`` hands the heap memory freed by earlier calls back
  to the system, so that memory the allocator kept cannot hide a call's growth.

All figures are in MiB (2**20 bytes). torch is imported only where a CUDA device is measured, so a
process that measures its RSS (a COCO evaluator in benchmarks/coco_eval.py) does not load it.
"""
import ctypes
import resource
import sys
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    import torch

__all__ = ["MIB", "PeakMemory", "peak_memory_mb", "peak_rss_mib", "proc_status_mib", "release_freed_heap",
           "reset_peak_rss"]

MIB = float(2**20)


def peak_rss_mib() -> float:
    """Peak RSS of this process so far, in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024.0


def peak_memory_mb(device: Optional["torch.device"] = None) -> float:
    """Peak memory of this process in MiB: allocated CUDA memory on a CUDA ``device``, else peak RSS."""
    if device is not None and device.type == "cuda":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated(device) / MIB
    return peak_rss_mib()


def reset_peak_rss() -> bool:
    """Lower this process's peak-RSS mark (VmHWM) to its current RSS; returns False where that is not
    supported (writing "5" to /proc/self/clear_refs needs Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def proc_status_mib(field: str) -> float:
    """A memory field of /proc/self/status (e.g. "VmRSS", "VmHWM"), in MiB; OSError without /proc,
    KeyError naming the fields when ``field`` is not one of them."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value.split()
    if field not in fields or len(fields[field]) != 2 or fields[field][1] != "kB":
        memory_fields = sorted(name for name, value in fields.items() if value[-1:] == ["kB"])
        raise KeyError(f"/proc/self/status has no memory field {field!r}; it has {memory_fields}.")
    return float(fields[field][0]) / 1024.0


def _load_malloc_trim() -> Optional[Callable[[int], int]]:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def release_freed_heap() -> bool:
    """Hand the heap memory that glibc keeps after ``free`` back to the system (``malloc_trim(0)``);
    returns False without glibc."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class PeakMemory:
    """Peak memory (MiB) between ``reset()`` and ``read()``, and the memory in use at ``reset()`` (``base``).

    Takes the device the measured calls run on. CUDA: allocated memory (``torch.cuda.max_memory_allocated``
    after ``reset_peak_memory_stats``). CPU on Linux: RSS, the peak reset through /proc/self/clear_refs after
    ``release_freed_heap()``. Elsewhere (``resettable`` False): the process's peak RSS so far, and ``base``
    stays None.
    """

    def __init__(self, device: "torch.device") -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.resettable = self.cuda or reset_peak_rss()
        self.base: Optional[float] = None

    def reset(self) -> None:
        """Start a new peak here and record the memory in use now as ``base``."""
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device) / MIB
        elif self.resettable:
            release_freed_heap()
            reset_peak_rss()
            self.base = proc_status_mib("VmRSS")

    def read(self) -> float:
        """The peak since the last ``reset()`` (the process's peak so far when it cannot be reset)."""
        if self.resettable and not self.cuda:
            return proc_status_mib("VmHWM")
        return peak_memory_mb(self.device)

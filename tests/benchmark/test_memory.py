"""retinadet.benchmark.memory: peak RSS, the training log's peak memory, and a peak that restarts per call."""
import mmap
import platform
import resource
import sys

import pytest
import torch

from retinadet.benchmark.memory import (
    PeakMemory,
    peak_memory_mb,
    peak_rss_mib,
    proc_status_mib,
    release_freed_heap,
    reset_peak_rss,
)

MIB = 2**20
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads and resets /proc/self")


def _touch(megabytes):
    """A float32 tensor of ``megabytes`` MiB with every page written."""
    return torch.ones(megabytes * MIB // 4)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_peak_rss_is_ru_maxrss_in_mib():
    assert peak_rss_mib() == pytest.approx(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, abs=1)
    # In MiB: at least what is resident now (hundreds of MiB with torch loaded), to the kernel's rounding.
    assert peak_rss_mib() >= proc_status_mib("VmRSS") - 4 > 100


def test_training_log_figure_is_the_process_peak_on_the_cpu():
    # CommonMetricPrinter's max_mem: peak RSS without a device or with a CPU device.
    assert peak_memory_mb() == pytest.approx(peak_rss_mib(), abs=1)
    assert peak_memory_mb(torch.device("cpu")) == pytest.approx(peak_rss_mib(), abs=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_log_figure_is_allocated_memory_on_cuda():
    device = torch.device("cuda")
    torch.cuda.reset_peak_memory_stats(device)
    x = torch.ones(64 * MIB // 4, device=device)
    assert peak_memory_mb(device) >= 64
    memory = PeakMemory(device)
    memory.reset()
    assert memory.base == pytest.approx(torch.cuda.memory_allocated(device) / MIB)
    y = torch.ones(32 * MIB // 4, device=device)
    assert 32 <= memory.read() - memory.base < 40
    del x, y


@linux_only
def test_proc_status_fields():
    rss, peak = proc_status_mib("VmRSS"), proc_status_mib("VmHWM")
    assert 0 < rss <= peak
    with pytest.raises(KeyError, match=r"no memory field 'VmNope'; it has \[.*'VmRSS'"):
        proc_status_mib("VmNope")


@linux_only
def test_reset_lowers_the_peak_mark():
    # 128 MiB mapped, written and unmapped: memory that surely leaves the process (a tensor could be served
    # from, and freed into, a resident free chunk of the heap that earlier tests left behind).
    block = mmap.mmap(-1, 128 * MIB)
    block[::mmap.PAGESIZE] = b"\1" * (128 * MIB // mmap.PAGESIZE)
    block.close()
    high = proc_status_mib("VmHWM")
    assert reset_peak_rss()
    # The mark falls from the peak to about the RSS.
    assert proc_status_mib("VmHWM") < high - 100
    assert proc_status_mib("VmHWM") == pytest.approx(proc_status_mib("VmRSS"), abs=8)


@linux_only
def test_peak_memory_gives_each_call_its_own_figure():
    memory = PeakMemory(torch.device("cpu"))
    assert memory.resettable and memory.base is None
    memory.reset()
    assert memory.base == pytest.approx(proc_status_mib("VmRSS"), abs=8)
    x = _touch(96)
    del x
    grown = memory.read() - memory.base
    assert 90 <= grown < 130  # the 96 MiB tensor, and a little noise
    memory.reset()
    y = _touch(16)
    del y
    assert 14 <= memory.read() - memory.base < 40  # the earlier 96 MiB no longer count


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_freed_heap_calls_malloc_trim():
    assert release_freed_heap() is True

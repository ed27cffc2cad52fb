"""retinadet.benchmark.options: the request of one benchmark run and the values it refuses; and the package's
import, which loads nothing heavy."""
import subprocess
import sys

import pytest

from retinadet.benchmark import BenchmarkError, BenchmarkOptions
from retinadet.benchmark.options import TASKS


def test_defaults_are_the_command_lines():
    options = BenchmarkOptions("configs/x.yaml", "train", size=[64, 96], opts=None)
    assert (options.iters, options.warmup, options.interval) == (10, 2, 1.0)
    assert options.size == (64, 96) and options.opts == []
    assert TASKS == ("train", "eval", "flops", "data", "time-to-accuracy")


@pytest.mark.parametrize("kwargs, message", [
    ({"task": "fly"}, "task 'fly' is not one of train, eval, flops, data, time-to-accuracy."),
    ({"task": "eval", "input": "camera"}, "input 'camera' is not one of synthetic, dataset."),
    ({"task": "train", "iters": 0}, "iters must be >= 1 and warmup >= 0; got 0, 2."),
    ({"task": "train", "warmup": -1}, "iters must be >= 1 and warmup >= 0; got 10, -1."),
    ({"task": "train", "size": (0, 96)}, "size is an image's (height, width), both >= 1; got (0, 96)."),
])
def test_bad_values_are_named(kwargs, message):
    with pytest.raises(BenchmarkError) as error:
        BenchmarkOptions("configs/x.yaml", **kwargs)
    assert str(error.value) == message


def test_importing_the_package_loads_neither_torch_nor_fvcore():
    # retinadet.utils.writers imports retinadet.benchmark.memory on every training run.
    code = ("import sys, retinadet.benchmark; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'fvcore')))")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert printed.strip() == "[]"

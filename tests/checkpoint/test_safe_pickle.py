"""Weights pickles load without running code: only numpy arrays and plain data are admitted."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from retinadet.checkpoint import load_checkpoint_file
from retinadet.checkpoint.safe_pickle import DisallowedGlobalError, loads_restricted

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _RunsCommand:
    """Unpickling this calls os.system(command): what a hostile weights file does."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Python2Array:
    """Pickles like a numpy array pickled by Python 2: the raw bytes as a (latin1) text string."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __reduce__(self):
        reconstruct = type(self.array).__reduce__(self.array)[0]
        state = (1, self.array.shape, self.array.dtype, False, self.array.tobytes().decode("latin1"))
        return (reconstruct, (np.ndarray, (0,), b"b"), state)


def _hostile_file(tmp_path, protocol=2):
    marker = tmp_path / "ran"
    path = tmp_path / "model_final.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"w": np.zeros(2, np.float32)}, "x": _RunsCommand(f"touch {marker}")}, f,
                    protocol=protocol)
    return path, marker


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_a_pickle_that_runs_a_command_is_refused_before_it_runs(tmp_path, protocol):
    path, marker = _hostile_file(tmp_path, protocol)
    with pytest.raises(ValueError, match=r"Refusing to load checkpoint .*model_final\.pkl: .*global posix\.system"):
        load_checkpoint_file(str(path))
    assert not marker.exists()
    # Unrestricted unpickling would have run it: the test's file is live.
    with open(path, "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_convert_weights_refuses_it_too(tmp_path):
    path, marker = _hostile_file(tmp_path)
    out = tmp_path / "converted.pth"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "convert_weights.py"), "--source", "detectron2",
                           "--input", str(path), "--output", str(out)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode != 0
    assert "posix.system" in proc.stderr and str(path) in proc.stderr
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_arrays_numbers_and_containers_round_trip(protocol):
    from collections import OrderedDict

    data = {"model": OrderedDict(w=np.arange(6, dtype=np.float32).reshape(2, 3), i=np.int64(7)),
            "__author__": "Detectron2 Model Zoo", "list": [1, 2.5, (3, None, True)], "raw": b"\x00\xff"}
    out = loads_restricted(pickle.dumps(data, protocol=protocol))
    assert np.array_equal(out["model"]["w"], data["model"]["w"]) and out["model"]["w"].dtype == np.float32
    assert out["model"]["i"] == 7 and out["list"] == [1, 2.5, (3, None, True)] and out["raw"] == b"\x00\xff"
    assert isinstance(out["model"], OrderedDict)


def test_python2_array_bytes_survive_latin1(tmp_path):
    # Every byte value, as Python 2 wrote them into a str: latin1 maps each to one character and back.
    w = np.frombuffer(bytes(range(256)), dtype=np.float32).reshape(8, 8).copy()
    path = tmp_path / "zoo.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"head.w": _Python2Array(w)}}, f, protocol=2)
    loaded = load_checkpoint_file(str(path))
    assert loaded["head.w"].dtype == torch.float32 and loaded["head.w"].numpy().tobytes() == bytes(range(256))


def test_the_error_names_the_global():
    with pytest.raises(DisallowedGlobalError) as info:
        loads_restricted(pickle.dumps(_RunsCommand("true")))
    assert (info.value.module, info.value.name) == ("posix", "system")
    with pytest.raises(DisallowedGlobalError, match="builtins.eval"):
        loads_restricted(b"cbuiltins\neval\n(S'1'\ntR.")

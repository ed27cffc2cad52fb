"""Tests of retinadet.utils.collect_env, run as ``python -m retinadet.utils.collect_env`` as a user runs it."""
import os
import platform
import shutil
import stat
import sys
from pathlib import Path
from typing import Dict

import pytest
import torch
import torchvision

import retinadet
from retinadet import ops
from retinadet.utils import collect_env
from retinadet.utils.testing import run_together

REPO = Path(__file__).resolve().parents[2]


def _rows(stdout: str) -> Dict[str, str]:
    """{name: value} from the printed table (tabulate's psql format: ``| name | value |``)."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("| "):
            name, value = line.strip().strip("|").split("|", 1)
            rows[name.strip()] = value.strip()
    return rows


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"default": ..., "disabled": ...} -> (exit code, rows, stderr); both start together.

    "disabled" runs with RETINADET_DISABLE_EXT=1, one intra-op thread and a PATH holding nothing, so
    nvcc and c++ cannot be found.
    """
    empty_bin = tmp_path_factory.mktemp("empty_bin")
    disabled_env = {**os.environ, "RETINADET_DISABLE_EXT": "1", "OMP_NUM_THREADS": "1", "PATH": str(empty_bin)}
    envs = {"default": dict(os.environ), "disabled": disabled_env}
    command = [sys.executable, "-m", "retinadet.utils.collect_env"]
    results = run_together({name: command for name in envs}, cwd=str(REPO), envs=envs)
    return {name: (status, _rows(stdout), stderr) for name, (status, stdout, stderr) in results.items()}


def _kernels_here() -> str:
    if not ops.extension_loaded():
        return "none"
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return ", ".join(k for k in ("CPU", "CUDA") if has("retinadet::nms", k)) or "none"


def test_default_run_reports_this_environment(runs):
    code, rows, stderr = runs["default"]
    assert code == 0, stderr
    assert rows["Python"].startswith(platform.python_version() + " ")
    assert rows["retinadet"] == retinadet.__version__
    assert rows["retinadet path"] == os.path.dirname(os.path.abspath(retinadet.__file__))
    assert rows["torch"] == torch.__version__
    assert rows["torch built with CUDA"] == (torch.version.cuda or "no")
    assert rows["torchvision"] == torchvision.__version__
    assert rows["CUDA available"] == str(torch.cuda.is_available())
    # The child sees the same environment as this process, so the extension loads (or not) alike.
    assert rows["retinadet._C loaded"] == str(ops.extension_loaded())
    assert rows["retinadet._C load error"] == (ops.extension_load_error() or "none")
    assert rows["compiled kernels for"] == _kernels_here()
    from retinadet.evaluation import compiled

    assert rows["COCO evaluator (Cython) loaded"] == str(compiled.extension_loaded())
    assert rows["COCO evaluator load error"] == (compiled.extension_load_error() or "none")
    assert rows["RETINADET_DISABLE_EXT"] == os.environ.get("RETINADET_DISABLE_EXT", "unset")
    assert int(rows["torch intra-op threads"]) >= 1
    assert rows["CUDA_HOME (with libcudart)"] == (collect_env.find_cuda_home() or "not found")
    if shutil.which("nvcc"):
        assert "release" in rows["nvcc"]
    else:
        assert rows["nvcc"] == "not found"


def test_disabled_extension_and_missing_tools(runs):
    code, rows, stderr = runs["disabled"]
    assert code == 0, stderr
    assert rows["retinadet._C loaded"] == "False"
    assert rows["retinadet._C load error"] == "disabled by RETINADET_DISABLE_EXT=1"
    assert rows["compiled kernels for"] == "none"
    assert rows["COCO evaluator (Cython) loaded"] == "False"
    assert rows["COCO evaluator load error"] == "disabled by RETINADET_DISABLE_EXT=1"
    assert rows["RETINADET_DISABLE_EXT"] == "1"
    assert rows["nvcc"] == "not found"
    assert rows["C++ compiler"] == "not found"
    assert rows["torch intra-op threads"] == "1"
    assert rows["torch"] == torch.__version__


def _toolkit(root: Path) -> Path:
    """A fake CUDA toolkit folder holding lib64/libcudart.so.13."""
    (root / "lib64").mkdir(parents=True)
    (root / "lib64" / "libcudart.so.13").touch()
    return root


def test_cuda_home_skips_folders_without_the_runtime(tmp_path, monkeypatch):
    (tmp_path / "bare").mkdir()
    toolkit = _toolkit(tmp_path / "toolkit")
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "bare"))
    monkeypatch.setenv("CUDA_PATH", str(toolkit))
    assert collect_env.find_cuda_home() == str(toolkit.resolve())


def test_cuda_home_found_through_an_nvcc_wrapper(tmp_path, monkeypatch):
    # Like /usr/local/bin/nvcc running /usr/local/cuda-X/bin/nvcc: the wrapper's own folder has no
    # runtime; the toolkit is the one nvcc's dry run names.
    toolkit = _toolkit(tmp_path / "cuda-x")
    wrapper_bin = tmp_path / "bin"
    wrapper_bin.mkdir()
    nvcc = wrapper_bin / "nvcc"
    nvcc.write_text(f"#!/bin/sh\necho '#$ _HERE_={toolkit}/bin'\n")
    nvcc.chmod(nvcc.stat().st_mode | stat.S_IEXEC)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", str(wrapper_bin))
    assert collect_env._nvcc_home() == str(toolkit.resolve())
    assert collect_env.find_cuda_home() == str(toolkit.resolve())

"""Environment report for bug reports: versions, CUDA toolchain and the state of retinadet._C."""
import glob
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Callable, List, Optional, Tuple

__all__ = ["collect_env", "find_cuda_home", "main"]

NOT_FOUND = "not found"


def _run(command: List[str]) -> Optional[str]:
    """stdout + stderr of ``command``, or None when it is not on PATH, fails or hangs."""
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout + done.stderr) if done.returncode == 0 else None


def _has_cudart(folder: Optional[str]) -> bool:
    if not folder:
        return False
    patterns = ("lib64/libcudart*", "lib/libcudart*", "targets/*/lib/libcudart*", "lib/x64/cudart*")
    return any(glob.glob(os.path.join(folder, p)) for p in patterns)


def _nvcc_home() -> Optional[str]:
    """The toolkit folder of the nvcc on PATH, as nvcc itself reports it.

    nvcc may be a wrapper script outside the toolkit (/usr/local/bin/nvcc running
    /usr/local/cuda-X/bin/nvcc), so the folder is read from its dry run (``_HERE_`` is the real
    bin folder) rather than guessed from the path of the command.
    """
    out = _run(["nvcc", "--dryrun", "-x", "cu", "-E", os.devnull])
    match = re.search(r"^#\$ _HERE_=(.+)$", out or "", re.MULTILINE)
    return os.path.dirname(os.path.realpath(match.group(1).strip())) if match else None


def find_cuda_home() -> Optional[str]:
    """The CUDA toolkit folder that really holds the runtime library (lib64/libcudart*), or None.

    Candidates in order: $CUDA_HOME, $CUDA_PATH, the folder of nvcc, /usr/local/cuda, then
    /usr/local/cuda-* (newest name first); the first one holding libcudart wins.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), _nvcc_home(), "/usr/local/cuda"]
    candidates += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for folder in candidates:
        if _has_cudart(folder):
            return os.path.realpath(folder)
    return None


def _torch_cuda_home() -> str:
    """torch.utils.cpp_extension.CUDA_HOME: the toolkit torch's extension builder would use."""
    # Importing cpp_extension logs a warning when it has to guess; the value is shown here anyway.
    cpp_logger = logging.getLogger("torch.utils.cpp_extension")
    level = cpp_logger.level
    cpp_logger.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import CUDA_HOME
    finally:
        cpp_logger.setLevel(level)
    return CUDA_HOME or NOT_FOUND


def _nvcc_version() -> str:
    out = _run(["nvcc", "--version"])
    if out is None:
        return NOT_FOUND
    release = [line for line in out.splitlines() if "release" in line]
    where = shutil.which("nvcc")
    return f"{(release or out.splitlines() or [''])[-1].strip()} ({where})"


def _cxx_version() -> str:
    out = _run(["c++", "--version"])
    return out.splitlines()[0].strip() if out else NOT_FOUND


def _gpus() -> str:
    import torch

    if not torch.cuda.is_available():
        return "none"
    return "; ".join(f"{i}: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count()))


def _compiled_kernels() -> str:
    """Devices for which retinadet::nms has a registered kernel (none when _C is not loaded)."""
    import torch

    devices = []
    for key in ("CPU", "CUDA"):
        try:
            if torch._C._dispatch_has_kernel_for_dispatch_key("retinadet::nms", key):
                devices.append(key)
        except RuntimeError:  # the op is not defined: retinadet._C was not loaded
            return "none"
    return ", ".join(devices) or "none"


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return NOT_FOUND


def _module_folder(module: str) -> str:
    try:
        return os.path.dirname(os.path.abspath(__import__(module).__file__))
    except ImportError:
        return NOT_FOUND


def _torch_value(get: Callable[["object"], object]) -> str:
    try:
        import torch
    except ImportError:
        return NOT_FOUND
    return str(get(torch))


def _extension_rows() -> List[Tuple[str, str]]:
    try:
        from retinadet import ops
    except ImportError as e:
        return [("retinadet._C loaded", "False"), ("retinadet._C load error", f"retinadet.ops: {e!r}")]
    return [
        ("retinadet._C loaded", str(ops.extension_loaded())),
        ("retinadet._C load error", ops.extension_load_error() or "none"),
        ("compiled kernels for", _compiled_kernels()),
    ]


def _coco_evaluator_rows() -> List[Tuple[str, str]]:
    try:
        from retinadet.evaluation import compiled
    except ImportError as e:
        return [("COCO evaluator (Cython) loaded", "False"),
                ("COCO evaluator load error", f"retinadet.evaluation: {e!r}")]
    return [("COCO evaluator (Cython) loaded", str(compiled.extension_loaded())),
            ("COCO evaluator load error", compiled.extension_load_error() or "none"),
            ("Cython", _version("Cython"))]


def collect_env() -> List[Tuple[str, str]]:
    """(name, value) rows describing this environment; a missing tool reads "not found"."""
    rows = [
        ("Python", sys.version.replace("\n", " ")),
        ("platform", platform.platform()),
        ("retinadet", _version("retinadet")),
        ("retinadet path", _module_folder("retinadet")),
        ("torch", _version("torch")),
        ("torch path", _module_folder("torch")),
        ("torch built with CUDA", _torch_value(lambda t: t.version.cuda or "no")),
        ("torchvision", _version("torchvision")),
        ("torchvision path", _module_folder("torchvision")),
        ("CUDA available", _torch_value(lambda t: t.cuda.is_available())),
        ("GPUs", _torch_value(lambda t: _gpus())),
        ("CUDA_HOME (torch)", _torch_value(lambda t: _torch_cuda_home())),
        ("CUDA_HOME (with libcudart)", find_cuda_home() or NOT_FOUND),
        ("nvcc", _nvcc_version()),
        ("C++ compiler", _cxx_version()),
        ("torch intra-op threads", _torch_value(lambda t: t.get_num_threads())),
    ]
    rows += _extension_rows()
    rows += _coco_evaluator_rows()
    rows.append(("RETINADET_DISABLE_EXT", os.environ.get("RETINADET_DISABLE_EXT", "unset")))
    return [(name, str(value)) for name, value in rows]


def main() -> None:
    """Print :func:`collect_env` as a two-column table."""
    from tabulate import tabulate

    print(tabulate(collect_env(), tablefmt="psql"))


if __name__ == "__main__":
    main()

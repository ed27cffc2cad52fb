"""Loads the compiled extension retinadet._C when it was built, and says once why when it was not."""
import logging
import os
from functools import lru_cache
from typing import Optional

import torch

logger = logging.getLogger(__name__)


def _load():
    """Import ``retinadet._C`` and register its Python-side parts; (module, None) or (None, why)."""
    if os.environ.get("RETINADET_DISABLE_EXT") == "1":
        return None, "disabled by RETINADET_DISABLE_EXT=1"
    try:
        from .. import _C as module  # loading it registers torch.ops.retinadet.*
    except ImportError as e:  # not built, or built against another torch
        return None, repr(e)
    try:
        from .registrations import register

        register()
    except Exception as e:  # a build older than this Python code (its schemas differ)
        return None, f"retinadet._C loaded but does not match retinadet.ops ({e!r}); rebuild it"
    return module, None


_C, _load_error = _load()
_fallback_reported = False


def extension_loaded() -> bool:
    """True when the compiled ops in ``retinadet._C`` are in use."""
    return _C is not None


def extension_load_error() -> Optional[str]:
    """Why the compiled extension is not in use (None when it is)."""
    return _load_error


@lru_cache(maxsize=None)
def _has_kernel(op: str, device_type: str) -> bool:
    """Whether ``torch.ops.retinadet.<op>`` has a kernel for tensors of ``device_type``."""
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device_type)
    return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key(f"retinadet::{op}", key)


def use_compiled(op: str, device: torch.device) -> bool:
    """True when the compiled ``op`` serves tensors on ``device``; otherwise report the fallback once.

    The fallback is reported through this module's logger the first time it is used, with the
    import error (or the missing device kernel) that caused it.
    """
    if _C is not None and _has_kernel(op, device.type):
        return True
    _report_fallback(op, device)
    return False


def _report_fallback(op: str, device: torch.device) -> None:
    global _fallback_reported
    if _fallback_reported:
        return
    _fallback_reported = True
    if _C is None:
        reason = f"retinadet._C is not in use ({_load_error})"
    else:
        reason = f"retinadet._C has no {device.type} kernel for {op}"
    logger.warning("%s; box ops run on the pure-PyTorch/torchvision fallback, same results.", reason)

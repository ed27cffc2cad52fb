"""Loads the compiled COCO evaluator retinadet.evaluation._cocoeval when it was built, and says once
why when it was not (``RETINADET_DISABLE_EXT=1`` also turns it off, as it does ``retinadet._C``)."""
import logging
import os
from typing import Any, Optional

__all__ = ["extension_loaded", "extension_load_error", "kernels", "report_fallback"]

logger = logging.getLogger(__name__)


def _load():
    """The compiled module, or (None, why it is not in use)."""
    if os.environ.get("RETINADET_DISABLE_EXT") == "1":
        return None, "disabled by RETINADET_DISABLE_EXT=1"
    try:
        from . import _cocoeval
    except ImportError as e:  # not built (no Cython at install time) or built for another Python
        return None, repr(e)
    return _cocoeval, None


_kernels, _load_error = _load()
_fallback_reported = False


def kernels() -> Optional[Any]:
    """The compiled module ``retinadet.evaluation._cocoeval``, or None when it is not in use."""
    return _kernels


def extension_loaded() -> bool:
    """True when the compiled evaluator ``retinadet.evaluation._cocoeval`` is in use."""
    return _kernels is not None


def extension_load_error() -> Optional[str]:
    """Why the compiled evaluator is not in use (None when it is)."""
    return _load_error


def report_fallback() -> None:
    """Warn, once per process, that pycocotools evaluates instead, and why."""
    global _fallback_reported
    if not _fallback_reported:
        _fallback_reported = True
        logger.warning("retinadet.evaluation._cocoeval is not in use (%s); COCO evaluation runs pycocotools' "
                       "COCOeval instead: the same numbers, slower. Install cython, then reinstall retinadet "
                       "(README, Install).", _load_error)

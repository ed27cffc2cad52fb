"""Loads the compiled extension retinadet._C when it was built, and says why when it was not."""
import logging
import os
from typing import Optional

logger = logging.getLogger(__name__)

_C = None
_load_error: Optional[str] = None

if os.environ.get("RETINADET_DISABLE_EXT") == "1":
    _load_error = "disabled by RETINADET_DISABLE_EXT=1"
else:
    try:
        from .. import _C  # noqa: F811
    except ImportError as e:  # not built, or built against another torch
        _load_error = repr(e)


def extension_loaded() -> bool:
    """True when the compiled ops in ``retinadet._C`` are in use."""
    return _C is not None


def extension_load_error() -> Optional[str]:
    """Why the compiled extension is not in use (None when it is)."""
    return _load_error

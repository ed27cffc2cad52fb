"""Model-wide execution options: channels_last memory format and torch.compile with an eager fallback."""
import functools
import logging
from typing import Any, Callable, Sequence

import torch
from torch import nn

__all__ = ["apply_channels_last", "compile_submodules"]

logger = logging.getLogger(__name__)


def apply_channels_last(model: nn.Module, key: str = "MODEL.CHANNELS_LAST") -> nn.Module:
    """Put ``model``'s 4-D weights in channels_last (NHWC) memory format and make it pad its input
    batches in that format. The meta-architecture must declare a ``channels_last`` attribute (RetinaNet
    and GeneralizedRCNN do); any other model is refused with a ValueError naming ``key``."""
    if not hasattr(model, "channels_last"):
        raise ValueError(
            f"{key} is True, but {type(model).__name__} cannot use it: it has no 'channels_last' attribute "
            "telling its input padding to use the NHWC memory format. Set it False, or give the "
            "meta-architecture a channels_last attribute that its preprocessing honours."
        )
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise ValueError(f"{key} is True, but {type(model).__name__} has no 2-D convolution to run in NHWC.")
    model.channels_last = True
    return model.to(memory_format=torch.channels_last)


def _with_fallback(name: str, eager: Callable, compiled: Callable) -> Callable:
    state = {"eager": False}

    @functools.wraps(eager)
    def forward(*args: Any, **kwargs: Any) -> Any:
        if state["eager"]:
            return eager(*args, **kwargs)
        try:
            return compiled(*args, **kwargs)
        except Exception as e:  # compilation can fail in many ways (no compiler, unsupported op, ...)
            state["eager"] = True
            logger.warning("torch.compile of %s failed (%s: %s); running it eagerly from now on (MODEL.COMPILE).",
                           name, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            return eager(*args, **kwargs)

    return forward


def compile_submodules(model: nn.Module, names: Sequence[str], key: str = "MODEL.COMPILE") -> nn.Module:
    """Replace the ``forward`` of each named submodule (e.g. "backbone", "neck", "head") by its
    ``torch.compile`` (dynamic shapes), keeping parameter names and the state dict unchanged. When
    torch.compile is missing, or compiling or running a compiled forward fails, that submodule runs
    eagerly and one warning names why. Returns ``model``."""
    compile_fn = getattr(torch, "compile", None)
    if compile_fn is None:
        logger.warning("%s is True, but this torch (%s) has no torch.compile; running eagerly.", key, torch.__version__)
        return model
    if not names:
        logger.warning("%s is True, but %s names no submodules to compile (compile_targets); running eagerly.",
                       key, type(model).__name__)
        return model
    for name in names:
        module = model.get_submodule(name)
        eager = module.forward
        try:
            compiled = compile_fn(eager, dynamic=True)
        except Exception as e:
            logger.warning("torch.compile of %s is unavailable (%s: %s); running it eagerly (%s).",
                           name, type(e).__name__, e, key)
            continue
        module.forward = _with_fallback(name, eager, compiled)
    return model

"""Optimizer and LR-schedule builders: they read SOLVER.* in one place."""
import logging
from typing import Any, Dict, List

import torch
from torch import nn

from .ema import ModelEMA
from .lr_scheduler import WarmupCosineLR, WarmupMultiStepLR

__all__ = ["build_lr_scheduler", "build_model_ema", "build_optimizer", "get_default_optimizer_params", "LR_SCHEDULERS", "OPTIMIZERS"]

logger = logging.getLogger(__name__)

_NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
    nn.modules.instancenorm._InstanceNorm,
)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()


def get_default_optimizer_params(
    model: nn.Module, base_lr: float, weight_decay: float, weight_decay_norm: float,
    weight_decay_bias: float, bias_lr_factor: float = 1.0,
) -> List[Dict[str, Any]]:
    """Parameter groups of the trainable parameters: norm-layer weights and biases get
    ``weight_decay_norm``; other biases get ``weight_decay_bias`` and ``base_lr * bias_lr_factor``;
    everything else ``weight_decay`` and ``base_lr``. Each parameter appears once; empty groups
    are left out. Group order is fixed, so optimizer state dicts line up across runs."""
    groups: Dict[str, Dict[str, Any]] = {
        "default": {"params": [], "lr": base_lr, "weight_decay": weight_decay},
        "norm": {"params": [], "lr": base_lr, "weight_decay": weight_decay_norm},
        "bias": {"params": [], "lr": base_lr * bias_lr_factor, "weight_decay": weight_decay_bias},
    }
    seen = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if _is_norm(module):
                groups["norm"]["params"].append(param)
            elif name == "bias":
                groups["bias"]["params"].append(param)
            else:
                groups["default"]["params"].append(param)
    return [g for g in groups.values() if g["params"]]


OPTIMIZERS = ("SGD", "AdamW")


def _closest(value: str, valid) -> str:
    import difflib

    close = difflib.get_close_matches(str(value), list(valid), n=1, cutoff=0.0)
    return f" (closest: {close[0]!r})" if close else ""


def build_optimizer(cfg: Any, model: nn.Module) -> torch.optim.Optimizer:
    """SOLVER.OPTIMIZER over the trainable parameters of ``model``, with BASE_LR and WEIGHT_DECAY
    (WEIGHT_DECAY_NORM on norm layers, WEIGHT_DECAY_BIAS and BIAS_LR_FACTOR on biases):
    "SGD" with SOLVER.MOMENTUM and NESTEROV (L2 decay), or "AdamW" with SOLVER.BETAS (decoupled decay)."""
    s = cfg.SOLVER
    if s.OPTIMIZER not in OPTIMIZERS:
        raise ValueError(f"Unknown SOLVER.OPTIMIZER {s.OPTIMIZER!r}; valid: {', '.join(OPTIMIZERS)}"
                         f"{_closest(s.OPTIMIZER, OPTIMIZERS)}.")
    if s.BASE_LR <= 0:
        raise ValueError(f"SOLVER.BASE_LR must be positive; got {s.BASE_LR}.")
    for key in ("WEIGHT_DECAY", "WEIGHT_DECAY_NORM", "WEIGHT_DECAY_BIAS"):
        if s[key] < 0:
            raise ValueError(f"SOLVER.{key} must be >= 0; got {s[key]}.")
    params = get_default_optimizer_params(
        model, s.BASE_LR, s.WEIGHT_DECAY, s.WEIGHT_DECAY_NORM, s.WEIGHT_DECAY_BIAS, s.BIAS_LR_FACTOR
    )
    if not params:
        raise ValueError("The model has no trainable parameters (check MODEL.BACKBONE.FREEZE_AT).")
    if s.OPTIMIZER == "AdamW":
        betas = tuple(float(b) for b in s.BETAS)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"SOLVER.BETAS must be two numbers in [0, 1); got {list(s.BETAS)}.")
        return torch.optim.AdamW(params, lr=s.BASE_LR, betas=betas, eps=s.ADAM_EPS)
    return torch.optim.SGD(params, lr=s.BASE_LR, momentum=s.MOMENTUM, nesterov=s.NESTEROV)


LR_SCHEDULERS = ("WarmupMultiStepLR", "WarmupCosineLR")


def build_lr_scheduler(cfg: Any, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """SOLVER.LR_SCHEDULER_NAME: "WarmupMultiStepLR" (STEPS, GAMMA) or "WarmupCosineLR" (MAX_ITER,
    BASE_LR_END), both after the SOLVER.WARMUP_* warmup."""
    s = cfg.SOLVER
    warmup = {"warmup_factor": s.WARMUP_FACTOR, "warmup_iters": s.WARMUP_ITERS, "warmup_method": s.WARMUP_METHOD}
    if s.LR_SCHEDULER_NAME == "WarmupMultiStepLR":
        late = [m for m in s.STEPS if m > s.MAX_ITER]
        if late:
            logger.warning("SOLVER.STEPS %s lie after SOLVER.MAX_ITER %d and will never apply.", late, s.MAX_ITER)
        return WarmupMultiStepLR(optimizer, s.STEPS, s.GAMMA, **warmup)
    if s.LR_SCHEDULER_NAME == "WarmupCosineLR":
        return WarmupCosineLR(optimizer, s.MAX_ITER, s.BASE_LR_END / s.BASE_LR, **warmup)
    raise ValueError(
        f"Unknown SOLVER.LR_SCHEDULER_NAME {s.LR_SCHEDULER_NAME!r}; valid: {', '.join(LR_SCHEDULERS)}"
        f"{_closest(s.LR_SCHEDULER_NAME, LR_SCHEDULERS)}."
    )


def build_model_ema(cfg: Any, model: nn.Module) -> "ModelEMA | None":
    """A ModelEMA of ``model`` (unwrapped, not DDP) from MODEL_EMA.*, or None when MODEL_EMA.ENABLED is False."""
    e = cfg.MODEL_EMA
    if not e.ENABLED:
        return None
    if not 0.0 <= e.DECAY < 1.0:
        raise ValueError(f"MODEL_EMA.DECAY must be in [0, 1) (e.g. 0.9998); got {e.DECAY}.")
    if e.RAMP_ITERS < 0:
        raise ValueError(f"MODEL_EMA.RAMP_ITERS must be >= 0 (0 = no ramp); got {e.RAMP_ITERS}.")
    return ModelEMA(model, e.DECAY, e.RAMP_ITERS)

"""Optimizer and LR-schedule builders: they read SOLVER.* in one place."""
import logging
from typing import Any, Dict, List

import torch
from torch import nn

from .lr_scheduler import WarmupCosineLR, WarmupMultiStepLR

__all__ = ["build_lr_scheduler", "build_optimizer", "get_default_optimizer_params", "LR_SCHEDULERS"]

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


def build_optimizer(cfg: Any, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with SOLVER.MOMENTUM, NESTEROV, BASE_LR, WEIGHT_DECAY (WEIGHT_DECAY_NORM on norm layers,
    WEIGHT_DECAY_BIAS and BIAS_LR_FACTOR on biases) over the trainable parameters of ``model``."""
    s = cfg.SOLVER
    if s.BASE_LR <= 0:
        raise ValueError(f"SOLVER.BASE_LR must be positive; got {s.BASE_LR}.")
    params = get_default_optimizer_params(
        model, s.BASE_LR, s.WEIGHT_DECAY, s.WEIGHT_DECAY_NORM, s.WEIGHT_DECAY_BIAS, s.BIAS_LR_FACTOR
    )
    if not params:
        raise ValueError("The model has no trainable parameters (check MODEL.BACKBONE.FREEZE_AT).")
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
    import difflib

    close = difflib.get_close_matches(s.LR_SCHEDULER_NAME, LR_SCHEDULERS, n=1, cutoff=0.0)
    raise ValueError(
        f"Unknown SOLVER.LR_SCHEDULER_NAME {s.LR_SCHEDULER_NAME!r}; valid: {', '.join(LR_SCHEDULERS)} "
        f"(closest: {close[0]!r})."
    )

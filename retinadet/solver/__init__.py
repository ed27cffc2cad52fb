"""Optimizer and learning-rate schedule builders."""
from .build import LR_SCHEDULERS, build_lr_scheduler, build_optimizer, get_default_optimizer_params
from .lr_scheduler import WarmupCosineLR, WarmupMultiStepLR, warmup_factor_at_iter

__all__ = [
    "LR_SCHEDULERS",
    "WarmupCosineLR",
    "WarmupMultiStepLR",
    "build_lr_scheduler",
    "build_optimizer",
    "get_default_optimizer_params",
    "warmup_factor_at_iter",
]

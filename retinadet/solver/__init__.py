"""Optimizer, learning-rate schedule and weight-EMA builders."""
from .build import (
    LR_SCHEDULERS, OPTIMIZERS, build_lr_scheduler, build_model_ema, build_optimizer, get_default_optimizer_params,
)
from .ema import ModelEMA
from .lr_scheduler import WarmupCosineLR, WarmupMultiStepLR, warmup_factor_at_iter

__all__ = [
    "LR_SCHEDULERS",
    "ModelEMA",
    "OPTIMIZERS",
    "WarmupCosineLR",
    "WarmupMultiStepLR",
    "build_lr_scheduler",
    "build_model_ema",
    "build_optimizer",
    "get_default_optimizer_params",
    "warmup_factor_at_iter",
]

"""Learning-rate schedules: a warmup (linear or constant) followed by multi-step decay or a cosine."""
import math
from typing import List, Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["WarmupCosineLR", "WarmupMultiStepLR", "warmup_factor_at_iter"]


def warmup_factor_at_iter(method: str, iteration: int, warmup_iters: int, warmup_factor: float) -> float:
    """The warmup multiplier of the LR at ``iteration``.

    "linear": from ``warmup_factor`` at iteration 0 up to 1 at ``warmup_iters``; "constant":
    ``warmup_factor`` until ``warmup_iters``; 1 afterwards, and always 1 when ``warmup_iters`` is 0.
    """
    if iteration >= warmup_iters:
        return 1.0
    if method == "constant":
        return warmup_factor
    if method == "linear":
        alpha = iteration / warmup_iters
        return warmup_factor * (1 - alpha) + alpha
    raise ValueError(f"Unknown warmup method {method!r} (SOLVER.WARMUP_METHOD); valid: 'linear', 'constant'.")


def _check_warmup(method: str, warmup_iters: int, warmup_factor: float) -> None:
    warmup_factor_at_iter(method, 0, 1, warmup_factor)  # validates the method name
    if warmup_iters < 0 or not 0.0 < warmup_factor <= 1.0:
        raise ValueError(
            f"Warmup needs SOLVER.WARMUP_ITERS >= 0 and 0 < SOLVER.WARMUP_FACTOR <= 1; got "
            f"{warmup_iters} and {warmup_factor}."
        )


class _WarmupScheduler(LRScheduler):
    """Closed-form schedules: the LR at step ``last_epoch`` (= iteration) is base_lr times a
    multiplier computed from the iteration alone, so a state dict of ``last_epoch`` resumes exactly."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_iters: int, warmup_factor: float,
                 warmup_method: str, last_epoch: int = -1) -> None:
        _check_warmup(warmup_method, warmup_iters, warmup_factor)
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)
        self.warmup_method = warmup_method
        super().__init__(optimizer, last_epoch)

    def _decay(self, iteration: int) -> float:
        raise NotImplementedError

    def multiplier(self, iteration: int) -> float:
        """The factor applied to every base LR at ``iteration``."""
        warm = warmup_factor_at_iter(self.warmup_method, iteration, self.warmup_iters, self.warmup_factor)
        return warm * self._decay(iteration)

    def get_lr(self) -> List[float]:
        factor = self.multiplier(self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]

    def _get_closed_form_lr(self) -> List[float]:
        return self.get_lr()


class WarmupMultiStepLR(_WarmupScheduler):
    """LR = base_lr x warmup x ``gamma`` ** (number of ``milestones`` <= iteration).

    Args:
        optimizer: its param groups' ``initial_lr`` (or ``lr``) are the base LRs.
        milestones: increasing iterations where the LR is multiplied by ``gamma``.
        gamma, warmup_factor, warmup_iters, warmup_method: see SOLVER.* in the defaults.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, milestones: Sequence[int], gamma: float = 0.1,
                 warmup_factor: float = 0.001, warmup_iters: int = 1000, warmup_method: str = "linear",
                 last_epoch: int = -1) -> None:
        if list(milestones) != sorted(milestones):
            raise ValueError(f"SOLVER.STEPS must be increasing; got {list(milestones)}.")
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)
        super().__init__(optimizer, warmup_iters, warmup_factor, warmup_method, last_epoch)

    def _decay(self, iteration: int) -> float:
        return self.gamma ** sum(1 for m in self.milestones if m <= iteration)


class WarmupCosineLR(_WarmupScheduler):
    """LR = base_lr x warmup x (end + (1 - end) x (1 + cos(pi x iteration / max_iter)) / 2).

    The cosine spans the whole run (warmup included), as in detectron2, and reaches
    ``end_factor`` x base_lr at ``max_iter``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_iter: int, end_factor: float = 0.0,
                 warmup_factor: float = 0.001, warmup_iters: int = 1000, warmup_method: str = "linear",
                 last_epoch: int = -1) -> None:
        if max_iter <= 0:
            raise ValueError(f"WarmupCosineLR needs SOLVER.MAX_ITER > 0; got {max_iter}.")
        self.max_iter = int(max_iter)
        self.end_factor = float(end_factor)
        super().__init__(optimizer, warmup_iters, warmup_factor, warmup_method, last_epoch)

    def _decay(self, iteration: int) -> float:
        progress = min(iteration, self.max_iter) / self.max_iter
        return self.end_factor + (1 - self.end_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))

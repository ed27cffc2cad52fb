"""Focal loss (FL), its FL* variant and alpha-balanced cross entropy, all from logits (Lin et al. 2017)."""
import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...registry import CLS_LOSS_REGISTRY

__all__ = [
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_star",
    "SigmoidFocalLoss",
    "SigmoidFocalLossStar",
    "AlphaBalancedCrossEntropy",
]

_REDUCTIONS = {
    "none": lambda loss: loss,
    "sum": torch.sum,
    "mean": torch.mean,
}


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction = '{reduction}' is not valid; use one of {sorted(_REDUCTIONS)}.")
    return _REDUCTIONS[reduction](loss)


def _check_alpha(alpha: float, where: str) -> float:
    alpha = float(alpha)
    if not (alpha < 0 or 0.0 <= alpha <= 1.0):
        raise ValueError(f"{where}: alpha = {alpha} must lie in [0, 1], or be < 0 to disable weighting.")
    return alpha


def _check_gamma(gamma: float, where: str, positive: bool = False) -> float:
    gamma = float(gamma)
    valid = gamma > 0 if positive else gamma >= 0
    if not (valid and math.isfinite(gamma)):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{where}: gamma = {gamma} must be finite and {bound}.")
    return gamma


def _as_float(logits: Tensor, targets: Tensor) -> Tuple[Tensor, Tensor]:
    """Cast logits/targets to a common float dtype of at least float32 (fp16 loses log-probabilities)."""
    dtype = torch.promote_types(torch.promote_types(torch.float32, logits.dtype), targets.dtype)
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits and targets must have the same shape; got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}."
        )
    return logits.to(dtype), targets.to(dtype)


def _alpha_weight(loss: Tensor, targets: Tensor, alpha: float) -> Tensor:
    """Multiply by alpha_t = alpha for foreground (t = 1), 1 - alpha for background; alpha < 0: no-op."""
    if alpha < 0:
        return loss
    return loss * (alpha * targets + (1 - alpha) * (1 - targets))


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none"
) -> Tensor:
    """Focal loss FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t) of the paper's Eq. 5, from logits.

    The sigmoid is fused in: ``-log(p_t)`` is binary cross entropy with logits, and the modulating
    factor is ``(1 - p_t)^gamma = exp(gamma * logsigmoid(z))`` with ``z = x * (1 - 2t)``, since
    ``1 - p_t = sigmoid(z)`` for binary targets. Unlike ``(1 - sigmoid(x)) ** gamma`` this never
    takes a power of an exact 0, so values and gradients stay finite for gamma < 1 and for very
    large |logits| (e.g. +-1000).

    Args:
        logits: ``(*)`` raw class scores x.
        targets: ``(*)`` float, 1 for foreground and 0 for background (binary targets).
        alpha: foreground weight in [0, 1] (1 - alpha for background); < 0 disables weighting.
        gamma: focusing parameter >= 0; 0 gives alpha-balanced cross entropy.
        reduction: "none" (``(*)`` per element), "sum" or "mean".
    """
    alpha = _check_alpha(alpha, "sigmoid_focal_loss")
    gamma = _check_gamma(gamma, "sigmoid_focal_loss")
    logits, targets = _as_float(logits, targets)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    loss = ce
    if gamma != 0:
        z = logits * (1 - 2 * targets)
        loss = ce * torch.exp(gamma * F.logsigmoid(z))
    return _reduce(_alpha_weight(loss, targets, alpha), reduction)


def sigmoid_focal_loss_star(
    logits: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 4.0,
    beta: float = 0.0,
    reduction: str = "none",
) -> Tensor:
    """FL* of the paper's appendix A: ``-alpha_t log(p*_t) / gamma`` with ``p*_t = sigmoid(gamma x_t + beta)``.

    ``x_t = x (2t - 1)`` is the logit of the true label; the log-probability is taken with
    ``logsigmoid`` so large |logits| stay finite.

    Args:
        logits: ``(*)`` raw class scores x.
        targets: ``(*)`` float, 1 for foreground and 0 for background (binary targets).
        alpha: foreground weight in [0, 1] (1 - alpha for background); < 0 disables weighting.
        gamma: sharpness > 0 (the paper's FL* setting is gamma = 4, beta = 0).
        beta: shift of the scaled logit.
        reduction: "none" (``(*)`` per element), "sum" or "mean".
    """
    alpha = _check_alpha(alpha, "sigmoid_focal_loss_star")
    gamma = _check_gamma(gamma, "sigmoid_focal_loss_star", positive=True)
    logits, targets = _as_float(logits, targets)
    x_t = logits * (2 * targets - 1)
    loss = -F.logsigmoid(gamma * x_t + beta) / gamma
    return _reduce(_alpha_weight(loss, targets, alpha), reduction)


@CLS_LOSS_REGISTRY.register()
class SigmoidFocalLoss(nn.Module):
    """Focal loss (paper Eq. 5) on per-class sigmoid logits; forward returns the sum over elements.

    Args:
        alpha: foreground weight in [0, 1] (paper: 0.25); < 0 disables weighting.
        gamma: focusing parameter >= 0 (paper: 2).
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0) -> None:
        super().__init__()
        self.alpha = _check_alpha(alpha, type(self).__name__)
        self.gamma = _check_gamma(gamma, type(self).__name__)

    @classmethod
    def from_config(cls, cfg, loss_cfg) -> dict:
        """Arguments from ``loss_cfg.{ALPHA, GAMMA}`` (loss_cfg is e.g. cfg.MODEL.CLS_LOSS)."""
        return {"alpha": loss_cfg.ALPHA, "gamma": loss_cfg.GAMMA}

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Sum of the loss over ``logits (M, K)`` against float ``targets (M, K)`` in {0, 1}."""
        return sigmoid_focal_loss(logits, targets, self.alpha, self.gamma, reduction="sum")

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}"


@CLS_LOSS_REGISTRY.register()
class AlphaBalancedCrossEntropy(SigmoidFocalLoss):
    """Alpha-balanced cross entropy, the paper's baseline (Eq. 3): the focal loss with gamma = 0.

    Args:
        alpha: foreground weight in [0, 1] (1 - alpha for background); < 0 gives plain BCE.
    """

    def __init__(self, alpha: float = 0.25) -> None:
        super().__init__(alpha=alpha, gamma=0.0)

    @classmethod
    def from_config(cls, cfg, loss_cfg) -> dict:
        """Arguments from ``loss_cfg.ALPHA``."""
        return {"alpha": loss_cfg.ALPHA}

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


@CLS_LOSS_REGISTRY.register()
class SigmoidFocalLossStar(nn.Module):
    """FL* (paper appendix A) on per-class sigmoid logits; forward returns the sum over elements.

    Args:
        gamma: sharpness > 0 (paper's FL*: 4).
        beta: logit shift (paper's FL*: 0).
        alpha: foreground weight in [0, 1]; < 0 disables weighting.
    """

    def __init__(self, gamma: float = 4.0, beta: float = 0.0, alpha: float = 0.25) -> None:
        super().__init__()
        self.gamma = _check_gamma(gamma, type(self).__name__, positive=True)
        self.beta = float(beta)
        self.alpha = _check_alpha(alpha, type(self).__name__)

    @classmethod
    def from_config(cls, cfg, loss_cfg) -> dict:
        """Arguments from ``loss_cfg.{GAMMA, BETA, ALPHA}``."""
        return {"gamma": loss_cfg.GAMMA, "beta": loss_cfg.BETA, "alpha": loss_cfg.ALPHA}

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Sum of FL* over ``logits (M, K)`` against float ``targets (M, K)`` in {0, 1}."""
        return sigmoid_focal_loss_star(
            logits, targets, self.alpha, self.gamma, self.beta, reduction="sum"
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, beta={self.beta}, alpha={self.alpha}"

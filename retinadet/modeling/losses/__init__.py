"""Losses: classification (focal loss, FL*, alpha-balanced CE) and box regression (smooth L1, L1, GIoU)."""
from .box import GIoULoss, L1Loss, SmoothL1Loss, giou_loss, smooth_l1_loss
from .focal import (
    AlphaBalancedCrossEntropy,
    SigmoidFocalLoss,
    SigmoidFocalLossStar,
    sigmoid_focal_loss,
    sigmoid_focal_loss_star,
)

__all__ = [
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_star",
    "SigmoidFocalLoss",
    "SigmoidFocalLossStar",
    "AlphaBalancedCrossEntropy",
    "smooth_l1_loss",
    "giou_loss",
    "SmoothL1Loss",
    "L1Loss",
    "GIoULoss",
]

"""Box-regression losses on foreground anchors: smooth L1 and L1 on deltas, GIoU on decoded boxes."""
import torch
from torch import Tensor, nn

from ...ops import box_area, paired_intersection_and_enclosure
from ...registry import BOX_LOSS_REGISTRY

__all__ = ["smooth_l1_loss", "giou_loss", "SmoothL1Loss", "L1Loss", "GIoULoss"]

# Below this beta the quadratic zone of smooth L1 is numerically meaningless (0.5 x^2 / beta would
# divide by ~0), so the loss is plain L1, as in detectron2.
_MIN_BETA = 1e-5


def _check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}."
        )


def smooth_l1_loss(pred: Tensor, target: Tensor, beta: float) -> Tensor:
    """Elementwise smooth L1 (Huber / beta): ``0.5 d^2 / beta`` if ``|d| < beta`` else ``|d| - 0.5 beta``.

    Args:
        pred, target: tensors of the same shape ``(*)``.
        beta: transition point >= 0; below 1e-5 the loss is ``|d|`` (plain L1).
    Returns:
        ``(*)`` loss per element, ``d = pred - target``.
    """
    _check_same_shape("pred", pred, "target", target)
    diff = torch.abs(pred - target)
    if beta < _MIN_BETA:
        return diff
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


def giou_loss(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Elementwise ``1 - GIoU`` (Rezatofighi et al. 2019) of paired boxes ``(F, 4)`` xyxy -> ``(F,)``.

    This is the paired (i-th with i-th) form a loss needs, not the (N, M) matrix of ``ops.box_iou``.
    ``eps`` in both denominators keeps zero-area pairs finite (value and gradient), matching
    torchvision's ``generalized_box_iou_loss``.
    """
    _check_same_shape("boxes1", boxes1, "boxes2", boxes2)
    inter, enclose = paired_intersection_and_enclosure(boxes1, boxes2)
    union = box_area(boxes1) + box_area(boxes2) - inter
    iou = inter / (union + eps)
    giou = iou - (enclose - union) / (enclose + eps)
    return 1 - giou


@BOX_LOSS_REGISTRY.register()
class SmoothL1Loss(nn.Module):
    """Smooth L1 between predicted deltas and the box coder's encoding of the gt boxes; returns the sum.

    Args:
        beta: transition point >= 0 (detectron2's default 0.1; its model-zoo RetinaNets use 0, plain L1); < 1e-5 gives plain L1.
    """

    def __init__(self, beta: float = 0.1) -> None:
        super().__init__()
        if not beta >= 0:
            raise ValueError(f"SmoothL1Loss beta = {beta} must be >= 0 (< 1e-5 means plain L1).")
        self.beta = float(beta)

    @classmethod
    def from_config(cls, cfg, loss_cfg) -> dict:
        """Arguments from ``loss_cfg.BETA`` (loss_cfg is e.g. cfg.MODEL.BOX_LOSS)."""
        return {"beta": loss_cfg.BETA}

    def forward(self, pred_deltas: Tensor, gt_boxes: Tensor, anchors: Tensor, box_coder) -> Tensor:
        """Sum over ``pred_deltas (F, 4)`` vs ``box_coder.encode(gt_boxes (F, 4), anchors (F, 4))`` (xyxy)."""
        target = box_coder.encode(gt_boxes, anchors)
        return smooth_l1_loss(pred_deltas, target.to(pred_deltas.dtype), self.beta).sum()

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


@BOX_LOSS_REGISTRY.register()
class L1Loss(nn.Module):
    """L1 between predicted deltas and the box coder's encoding of the gt boxes; returns the sum."""

    @classmethod
    def from_config(cls, cfg, loss_cfg) -> dict:
        """No arguments."""
        return {}

    def forward(self, pred_deltas: Tensor, gt_boxes: Tensor, anchors: Tensor, box_coder) -> Tensor:
        """Sum over ``pred_deltas (F, 4)`` vs ``box_coder.encode(gt_boxes (F, 4), anchors (F, 4))`` (xyxy)."""
        target = box_coder.encode(gt_boxes, anchors)
        _check_same_shape("pred_deltas", pred_deltas, "encoded gt_boxes", target)
        return torch.abs(pred_deltas - target.to(pred_deltas.dtype)).sum()


@BOX_LOSS_REGISTRY.register()
class GIoULoss(nn.Module):
    """``1 - GIoU`` between boxes decoded from the predictions and the gt boxes; returns the sum.

    Args:
        eps: added to the union and enclosing areas so degenerate boxes give finite values.
    """

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        self.eps = float(eps)

    @classmethod
    def from_config(cls, cfg, loss_cfg) -> dict:
        """No config keys: eps keeps its default."""
        return {}

    def forward(self, pred_deltas: Tensor, gt_boxes: Tensor, anchors: Tensor, box_coder) -> Tensor:
        """Sum over ``box_coder.decode(pred_deltas (F, 4), anchors (F, 4))`` vs ``gt_boxes (F, 4)`` (xyxy)."""
        pred_boxes = box_coder.decode(pred_deltas, anchors)
        return giou_loss(pred_boxes, gt_boxes.to(pred_boxes.dtype), self.eps).sum()

    def extra_repr(self) -> str:
        return f"eps={self.eps}"

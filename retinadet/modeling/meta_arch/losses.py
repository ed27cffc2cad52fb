"""Anchor matching and the dense detection losses of one batch, before normalisation."""
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..matchers import IGNORE, POSITIVE

__all__ = ["match_anchors", "dense_detection_losses"]


def match_anchors(
    anchors: Tensor, targets: List[Dict[str, Tensor]], matcher, num_classes: int
) -> Tuple[Tensor, Tensor, Tensor]:
    """Assign each anchor a class and a gt box, image by image.

    Args:
        anchors: (R, 4) xyxy, shared by the batch; targets: per image {"boxes" (M, 4), "labels" (M,)}.

    Returns:
        match_labels (N, R) int8 (matcher labels), gt_classes (N, R) int64 (``num_classes`` where not
        POSITIVE), matched_boxes (N, R, 4) xyxy (meaningful where POSITIVE).
    """
    labels_all, classes_all, boxes_all = [], [], []
    for target in targets:
        gt_boxes = target["boxes"].to(anchors.device)
        gt_labels = target["labels"].to(anchors.device)
        matched_idxs, match_labels = matcher(gt_boxes, anchors)
        if gt_boxes.numel() > 0:
            classes = gt_labels[matched_idxs]
            boxes = gt_boxes[matched_idxs]
        else:
            classes = torch.zeros_like(matched_idxs)
            boxes = torch.zeros_like(anchors)
        classes = torch.where(match_labels == POSITIVE, classes, torch.full_like(classes, num_classes))
        labels_all.append(match_labels)
        classes_all.append(classes)
        boxes_all.append(boxes)
    return torch.stack(labels_all), torch.stack(classes_all), torch.stack(boxes_all)


def _losses(logits, deltas, anchors, match_labels, gt_classes, matched_boxes, box_coder, cls_loss, box_loss):
    """Summed classification and box losses over anchors of any leading shape."""
    num_classes = logits.shape[-1]
    valid = match_labels != IGNORE
    pos = match_labels == POSITIVE
    targets = F.one_hot(gt_classes[valid], num_classes + 1)[:, :num_classes].to(logits.dtype)
    loss_cls = cls_loss(logits[valid], targets)
    anchors = anchors.expand(deltas.shape) if anchors.dim() < deltas.dim() else anchors
    loss_box = box_loss(deltas[pos], matched_boxes[pos], anchors[pos], box_coder)
    return loss_cls, loss_box, pos.sum()


def dense_detection_losses(
    logits: Tensor,
    deltas: Tensor,
    anchors: Tensor,
    targets: List[Dict[str, Tensor]],
    matcher,
    box_coder,
    cls_loss,
    box_loss,
    normalize_per_image: bool,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Classification and box losses of a batch.

    Args:
        logits: (N, R, K); deltas: (N, R, 4); anchors: (R, 4) xyxy; targets: per image dicts.
        normalize_per_image: divide each image's losses by its foreground count (at least 1) and
            average over images (torchvision); otherwise return plain sums.

    Returns:
        loss_cls, loss_box (scalars) and the number of foreground anchors in the batch.
    """
    match_labels, gt_classes, matched_boxes = match_anchors(anchors, targets, matcher, logits.shape[-1])
    if not normalize_per_image:
        return _losses(
            logits, deltas, anchors, match_labels, gt_classes, matched_boxes, box_coder, cls_loss, box_loss
        )
    loss_cls, loss_box, num_pos = 0.0, 0.0, 0
    for i in range(logits.shape[0]):
        c, b, n = _losses(
            logits[i], deltas[i], anchors, match_labels[i], gt_classes[i], matched_boxes[i],
            box_coder, cls_loss, box_loss,
        )
        loss_cls = loss_cls + c / n.clamp(min=1)
        loss_box = loss_box + b / n.clamp(min=1)
        num_pos = num_pos + n
    return loss_cls / logits.shape[0], loss_box / logits.shape[0], num_pos

"""Fast R-CNN outputs: class logits (background last) and class-specific box deltas, their losses
and the detections they decode to."""
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ... import ops
from ...structures import clip_boxes
from ..losses import smooth_l1_loss

__all__ = ["FastRCNNPredictor", "fast_rcnn_losses", "fast_rcnn_inference"]


class FastRCNNPredictor(nn.Module):
    """Two linear layers on each region's feature: ``cls_score`` -> K + 1 logits, background last
    (index K), and ``bbox_pred`` -> 4K deltas (dx, dy, dw, dh) per class, class k at columns
    ``4k:4k + 4`` (4 deltas shared by every class when ``cls_agnostic_bbox_reg``).

    Initialised as detectron2: ``cls_score`` weights normal(0, 0.01), ``bbox_pred`` normal(0, 0.001),
    biases 0.

    Args:
        in_features: width of the region features.
        num_classes: K, object classes without background, >= 1.
        cls_agnostic_bbox_reg: one box per region instead of one per class.
    """

    def __init__(self, in_features: int, num_classes: int, cls_agnostic_bbox_reg: bool = False):
        super().__init__()
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(
                f"FastRCNNPredictor num_classes = {num_classes!r} (MODEL.ROI_HEADS.NUM_CLASSES) must be an "
                "integer >= 1."
            )
        self.num_classes = int(num_classes)
        self.cls_agnostic_bbox_reg = bool(cls_agnostic_bbox_reg)
        self.cls_score = nn.Linear(in_features, self.num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, 4 if self.cls_agnostic_bbox_reg else 4 * self.num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.constant_(self.cls_score.bias, 0.0)
        nn.init.constant_(self.bbox_pred.bias, 0.0)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """``(R, D)`` region features -> logits ``(R, K + 1)`` and deltas ``(R, 4K)`` (or ``(R, 4)``)."""
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)


def _deltas_of_classes(deltas: Tensor, classes: Tensor) -> Tensor:
    """Rows of ``deltas (R, 4K or 4)`` at each region's class ``classes (R,)`` -> ``(R, 4)``.

    Columns 4c..4c+3 hold class c's deltas; with 4 columns (class-agnostic) every class reads columns
    0..3, which ``4c mod 4`` gives too. No reshape and no branch on the width, so a traced graph takes
    any number of regions, none included."""
    first = torch.remainder(classes * 4, deltas.shape[1])
    columns = first[:, None] + torch.arange(4, device=deltas.device)
    return deltas.gather(1, columns)


def fast_rcnn_losses(
    logits: Tensor,
    deltas: Tensor,
    gt_classes: Tensor,
    proposals: Tensor,
    gt_boxes: Tensor,
    box_coder,
    smooth_l1_beta: float,
) -> Dict[str, Tensor]:
    """Losses of the sampled regions of a batch (torchvision's ``fastrcnn_loss``, background last).

    Args:
        logits: ``(S, K + 1)``; deltas: ``(S, 4K)`` or ``(S, 4)``; gt_classes: ``(S,)`` int64 in
            ``[0, K]``, K = background; proposals: ``(S, 4)`` xyxy; gt_boxes: ``(S, 4)`` xyxy, the
            matched gt box of each region (used where the class is < K).
        box_coder: encodes the regression targets of gt_boxes against proposals.
        smooth_l1_beta: transition point of the smooth L1 (< 1e-5: L1).

    Returns:
        {"loss_cls": softmax cross entropy averaged over the S regions,
         "loss_box_reg": smooth L1 of the foreground regions' deltas of their own class against
         their targets, summed and divided by S}. S = 0 gives zero losses that keep the graph.
    """
    num_classes = logits.shape[1] - 1
    num_sampled = gt_classes.numel()
    if num_sampled == 0:
        zero = logits.sum() * 0.0 + deltas.sum() * 0.0
        return {"loss_cls": zero, "loss_box_reg": zero.clone()}
    loss_cls = F.cross_entropy(logits, gt_classes)
    fg = torch.where(gt_classes < num_classes)[0]
    fg_classes = gt_classes[fg]
    pred = _deltas_of_classes(deltas[fg], fg_classes)
    target = box_coder.encode(gt_boxes[fg], proposals[fg]).to(pred.dtype)
    loss_box = smooth_l1_loss(pred, target, smooth_l1_beta).sum() / num_sampled
    return {"loss_cls": loss_cls, "loss_box_reg": loss_box}


def _detections_of_image(
    scores: Tensor,
    deltas: Tensor,
    proposals: Tensor,
    image_size: Tuple[int, int],
    box_coder,
    score_thresh: float,
    nms_thresh: float,
    min_box_size: float,
    max_detections: int,
) -> Dict[str, Tensor]:
    """Detections of one image from ``scores (P, K + 1)`` (softmax, background last),
    ``deltas (P, 4K or 4)`` and ``proposals (P, 4)`` xyxy; see :func:`fast_rcnn_inference`."""
    num_classes = scores.shape[1] - 1
    # (P, K) row-major: candidate j is proposal j // K, class j % K, the order torchvision flattens in.
    fg_scores = scores[:, :num_classes].reshape(-1)
    candidates = torch.where(fg_scores > score_thresh)[0]
    fg_scores = fg_scores[candidates]
    proposal_idx = torch.div(candidates, num_classes, rounding_mode="floor")
    labels = candidates % num_classes
    # Each (proposal, class) box is decoded on its own, so decoding only the candidates gives the
    # numbers of decoding every class of every proposal and selecting afterwards.
    boxes = box_coder.decode(
        _deltas_of_classes(deltas[proposal_idx], labels), proposals[proposal_idx]
    )
    boxes = clip_boxes(boxes, image_size)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = torch.where((widths >= min_box_size) & (heights >= min_box_size))[0]
    boxes, fg_scores, labels = boxes[keep], fg_scores[keep], labels[keep]
    keep = ops.batched_nms(boxes, fg_scores, labels, nms_thresh)[:max_detections]
    return {"boxes": boxes[keep], "scores": fg_scores[keep], "labels": labels[keep]}


def fast_rcnn_inference(
    logits: Tensor,
    deltas: Tensor,
    proposals: List[Tensor],
    image_sizes: List[Tuple[int, int]],
    box_coder,
    score_thresh: float,
    nms_thresh: float,
    min_box_size: float,
    max_detections: int,
) -> List[Dict[str, Tensor]]:
    """Detections per image (torchvision's ``postprocess_detections``, background last).

    Softmax over the K + 1 logits; every (proposal, class) pair with class < K is a candidate whose
    box is its class's deltas decoded against the proposal and clipped to the image. Candidates
    with score > ``score_thresh`` and both sides >= ``min_box_size`` go through class-aware NMS at
    ``nms_thresh``; the ``max_detections`` best are kept.

    Args:
        logits: ``(R, K + 1)``; deltas: ``(R, 4K)`` or ``(R, 4)``, rows of all images in order.
        proposals: per image ``(Pi, 4)`` xyxy, sum Pi = R; image_sizes: per image (h, w).

    Returns:
        per image {"boxes": (D, 4) xyxy in the image_sizes frame, "scores": (D,) decreasing,
        "labels": (D,) int64 in [0, K)}.
    """
    # Half-precision logits (autocast) are scored in float32, the precision the boxes are decoded in.
    scores = F.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    if len(proposals) == 1:  # one image: no split (whose sizes a traced graph would freeze)
        per_image = [(scores, deltas)]
    else:
        counts = [p.shape[0] for p in proposals]
        per_image = list(zip(scores.split(counts), deltas.split(counts)))
    results = []
    for (s, d), p, size in zip(per_image, proposals, image_sizes):
        results.append(
            _detections_of_image(s, d, p, size, box_coder, score_thresh, nms_thresh, min_box_size, max_detections)
        )
    return results

"""IoU matcher: assigns each anchor its best ground-truth box and a NEGATIVE/IGNORE/POSITIVE label."""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ...ops import box_ioa, low_quality_matches, match_max_iou
from ...registry import MATCHER_REGISTRY

__all__ = ["NEGATIVE", "IGNORE", "POSITIVE", "LABELS_BY_NAME", "IoUMatcher"]

NEGATIVE = 0  # anchor is background: trained towards "no object" for every class
IGNORE = -1  # anchor contributes no loss (IoU in the ambiguous band)
POSITIVE = 1  # anchor is foreground: trained on its matched box's class and coordinates
LABELS_BY_NAME: Dict[str, int] = {"NEGATIVE": NEGATIVE, "IGNORE": IGNORE, "POSITIVE": POSITIVE}

LabelLike = Union[int, str]


def _resolve_label(label: LabelLike, index: int) -> int:
    """Turn a label given as an int or a name into one of the label constants."""
    if isinstance(label, str):
        if label not in LABELS_BY_NAME:
            raise ValueError(
                f"IoUMatcher labels[{index}] = '{label}' is not a known label name; valid names: "
                f"{sorted(LABELS_BY_NAME)}."
            )
        return LABELS_BY_NAME[label]
    # bool is an int subclass but True/False as a label is surely a mistake.
    if isinstance(label, bool) or not isinstance(label, int) or label not in LABELS_BY_NAME.values():
        raise ValueError(
            f"IoUMatcher labels[{index}] = {label!r} is not a valid label; use one of "
            f"{LABELS_BY_NAME} (by name or by value)."
        )
    return label


def _check_thresholds(thresholds: Sequence[float]) -> Tuple[float, ...]:
    """Return ``thresholds`` as floats after checking they increase strictly inside (0, 1)."""
    values = tuple(float(t) for t in thresholds)
    if len(values) == 0:
        raise ValueError("IoUMatcher thresholds must hold at least one IoU value; got ().")
    for i, t in enumerate(values):
        if not 0.0 < t < 1.0:
            raise ValueError(
                f"IoUMatcher thresholds[{i}] = {t} must lie in the open interval (0, 1); "
                f"thresholds = {values}."
            )
    for i in range(1, len(values)):
        if values[i] <= values[i - 1]:
            raise ValueError(
                f"IoUMatcher thresholds must increase strictly; got thresholds = {values} "
                f"(thresholds[{i}] = {values[i]} <= thresholds[{i - 1}] = {values[i - 1]})."
            )
    return values


@MATCHER_REGISTRY.register()
class IoUMatcher(nn.Module):
    """Match anchors to ground-truth boxes by IoU, as in RetinaNet (Lin et al. 2017, Sec. 4).

    Each anchor takes the gt box of highest IoU; its label comes from the interval that IoU falls in:
    ``iou < thresholds[0] -> labels[0]``, ``thresholds[i-1] <= iou < thresholds[i] -> labels[i]``,
    ``iou >= thresholds[-1] -> labels[-1]``. With the paper's (0.4, 0.5) and (NEGATIVE, IGNORE,
    POSITIVE): IoU < 0.4 is background, [0.4, 0.5) is ignored, >= 0.5 is foreground.

    With ``allow_low_quality_matches``, for every gt box the anchors that reach that gt's highest
    IoU (ties included) become POSITIVE, keeping their own best gt as the match (torchvision's
    ``Matcher.set_low_quality_matches_``). Departure from torchvision/detectron2: a gt whose highest
    IoU is 0 (a zero-area box, or one overlapping no anchor) adds nothing, since otherwise every
    anchor ties at IoU 0 and would turn positive.

    Args:
        thresholds: strictly increasing IoU boundaries in (0, 1).
        labels: one label per interval (``len(thresholds) + 1``), each NEGATIVE, IGNORE, POSITIVE
            or their names "NEGATIVE", "IGNORE", "POSITIVE".
        allow_low_quality_matches: promote each gt's best anchors to POSITIVE as described above.
        crowd_ioa_threshold: a NEGATIVE anchor whose area is covered at least this much by a crowd
            region (``crowd_boxes`` of :meth:`forward`, e.g. COCO iscrowd) becomes IGNORE: a crowd
            holds objects, so its anchors must not be trained as background. > 1 disables it.
    """

    def __init__(
        self,
        thresholds: Sequence[float] = (0.4, 0.5),
        labels: Sequence[LabelLike] = (NEGATIVE, IGNORE, POSITIVE),
        allow_low_quality_matches: bool = False,
        crowd_ioa_threshold: float = 0.5,
    ) -> None:
        super().__init__()
        self.thresholds = _check_thresholds(thresholds)
        if isinstance(labels, str) or len(labels) != len(self.thresholds) + 1:
            raise ValueError(
                f"IoUMatcher needs len(labels) == len(thresholds) + 1 (one label per IoU interval); "
                f"got labels = {labels!r} for thresholds = {self.thresholds}."
            )
        self.labels = tuple(_resolve_label(label, i) for i, label in enumerate(labels))
        self.allow_low_quality_matches = bool(allow_low_quality_matches)
        if not crowd_ioa_threshold > 0:
            raise ValueError(
                f"IoUMatcher crowd_ioa_threshold = {crowd_ioa_threshold} must be > 0 (> 1 disables crowd regions)."
            )
        self.crowd_ioa_threshold = float(crowd_ioa_threshold)

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Arguments from ``cfg.MODEL.MATCHER.{THRESHOLDS, LABELS, ALLOW_LOW_QUALITY_MATCHES}``."""
        m = cfg.MODEL.MATCHER
        return {
            "thresholds": list(m.THRESHOLDS),
            "labels": list(m.LABELS),
            "allow_low_quality_matches": m.ALLOW_LOW_QUALITY_MATCHES,
            "crowd_ioa_threshold": m.CROWD_IOA_THRESHOLD,
        }

    def forward(self, gt_boxes: Tensor, anchors: Tensor, crowd_boxes: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Match ``anchors (N, 4)`` to ``gt_boxes (M, 4)``, both xyxy absolute pixels.

        ``crowd_boxes (K, 4)`` xyxy, optional: crowd regions whose covered anchors are not negatives.

        Returns:
            matched_idxs: ``(N,)`` int64, index in ``[0, M)`` of each anchor's best gt (0 when M == 0;
                meaningful only where the label is POSITIVE).
            match_labels: ``(N,)`` int8, NEGATIVE / IGNORE / POSITIVE per anchor.
        """
        gt_boxes = gt_boxes.to(anchors.dtype)
        num_anchors = anchors.shape[0]
        if gt_boxes.shape[0] == 0 or num_anchors == 0:
            matched_idxs, match_labels = self._all_background(num_anchors, anchors.device)
        else:
            # O(N + M) memory: the N x M IoU matrix is never built (ops.match_max_iou).
            max_iou, matched_idxs, best_iou_per_gt = match_max_iou(anchors, gt_boxes)
            match_labels = self._labels_from_max_iou(max_iou)
            if self.allow_low_quality_matches:
                match_labels[low_quality_matches(anchors, gt_boxes, best_iou_per_gt)] = POSITIVE
        if crowd_boxes is not None and crowd_boxes.shape[0] > 0 and num_anchors > 0:
            covered = box_ioa(anchors, crowd_boxes.to(anchors.dtype)).max(dim=1).values >= self.crowd_ioa_threshold
            match_labels[covered & (match_labels == NEGATIVE)] = IGNORE
        return matched_idxs, match_labels

    def match_iou_matrix(self, iou: Tensor) -> Tuple[Tensor, Tensor]:
        """Match from a precomputed IoU matrix ``iou (M, N)`` (gt x anchors); returns as :meth:`forward`."""
        if iou.dim() != 2:
            raise ValueError(f"IoUMatcher expects an (M, N) IoU matrix; got shape {tuple(iou.shape)}.")
        num_gt, num_anchors = iou.shape
        if num_gt == 0 or num_anchors == 0:
            return self._all_background(num_anchors, iou.device)
        matched_vals, matched_idxs = iou.max(dim=0)
        match_labels = self._labels_from_max_iou(matched_vals)
        if self.allow_low_quality_matches:
            match_labels[self._low_quality_anchors(iou)] = POSITIVE
        return matched_idxs, match_labels

    def _all_background(self, num_anchors: int, device: torch.device) -> Tuple[Tensor, Tensor]:
        """No gt: every anchor is background (labels[0]); the index is a placeholder."""
        matched_idxs = torch.zeros(num_anchors, dtype=torch.int64, device=device)
        match_labels = torch.full((num_anchors,), self.labels[0], dtype=torch.int8, device=device)
        return matched_idxs, match_labels

    def _labels_from_max_iou(self, max_iou: Tensor) -> Tensor:
        """``(N,)`` int8 label of each anchor from its highest IoU ``max_iou (N,)``."""
        match_labels = torch.full(max_iou.shape, self.labels[0], dtype=torch.int8, device=max_iou.device)
        # Walking up the thresholds, each one overwrites the label of every anchor at or above it,
        # so an anchor ends with the label of the highest boundary it reaches (half-open intervals).
        for threshold, label in zip(self.thresholds, self.labels[1:]):
            match_labels[max_iou >= threshold] = label
        return match_labels

    @staticmethod
    def _low_quality_anchors(iou: Tensor) -> Tensor:
        """``(N,)`` bool: anchors reaching some gt's highest IoU, for gts whose highest IoU is > 0."""
        highest_per_gt = iou.max(dim=1).values[:, None]
        # Exact equality keeps ties: all anchors sharing a gt's best IoU are promoted together.
        is_best = (iou == highest_per_gt) & (highest_per_gt > 0)
        return is_best.any(dim=0)

    def extra_repr(self) -> str:
        names = {v: k for k, v in LABELS_BY_NAME.items()}
        labels = ", ".join(names[label] for label in self.labels)
        return (
            f"thresholds={self.thresholds}, labels=({labels}), "
            f"allow_low_quality_matches={self.allow_low_quality_matches}, "
            f"crowd_ioa_threshold={self.crowd_ioa_threshold}"
        )

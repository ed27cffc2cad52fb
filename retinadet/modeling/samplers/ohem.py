"""Online hard example mining (Shrivastava et al. 2016) as used in the focal-loss paper's ablation."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ...ops import nms
from ...registry import SAMPLER_REGISTRY
from ..matchers import NEGATIVE, POSITIVE
from .base import ExampleSampler

__all__ = ["OHEMSampler"]


@SAMPLER_REGISTRY.register()
class OHEMSampler(ExampleSampler):
    """Keep the highest-loss examples of one image, after a greedy NMS over their predicted boxes.

    The examples are the non-ignored anchors (POSITIVE or NEGATIVE). In decreasing order of loss
    (ties: lower index first), an example is suppressed when its predicted box has IoU >
    ``nms_thresh`` with a kept, higher-loss one, whatever the two examples' labels; the survivors,
    in that order, form the sample. With ``positive_fraction`` >= 0 the sample holds the first
    P = min(#surviving foreground, int(B * fraction)) foreground survivors and the first
    Q = min(#surviving background, B - P) background ones (the paper's "OHEM 1:3" with 0.25);
    with ``positive_fraction`` < 0 it holds the first B survivors of either kind (the paper's
    best OHEM setting). B = ``batch_size_per_image``.

    Speed: the NMS runs over candidates only (``pre_nms_topk`` 2000 by default: a few milliseconds
    per image on a CPU core even for the ~120k anchors of an 800 x 1333 image, and usually ample
    for B = 128-256 at IoU 0.5): the ``pre_nms_topk`` highest-loss examples, plus,
    when a foreground share is set, the ``pre_nms_topk`` highest-loss foreground examples (so the
    foreground quota does not depend on the background). NMS survivors among the highest-loss
    examples are decided by higher-loss examples alone, so survivors of that prefix are exactly
    those of an NMS over every example. When the candidates yield fewer than B sampled examples
    and examples remain outside, the candidate count grows fourfold and the NMS reruns, so the
    sample is never smaller than the full NMS would allow; with no ratio the result is then
    identical to NMS over all examples. With a ratio, a foreground candidate below that prefix is
    tested against the candidates only (not every higher-loss background example).

    Called as ``sampler(match_labels (R,), losses (R,), boxes (R, 4) xyxy)``; returns
    ``(positive_idx (P,), negative_idx (Q,))`` int64 indices into R, each in decreasing-loss order.

    ``needs_losses = True``: the caller passes each example's loss and predicted box (no gradient).
    """

    needs_losses = True
    allow_no_ratio = True

    def __init__(
        self,
        batch_size_per_image: int,
        positive_fraction: float,
        nms_thresh: float,
        pre_nms_topk: int = 2000,
    ):
        super().__init__(batch_size_per_image, positive_fraction)
        if not 0.0 <= nms_thresh <= 1.0:
            raise ValueError(f"OHEMSampler: nms_thresh = {nms_thresh!r} must lie in [0, 1] (1 = no suppression).")
        if isinstance(pre_nms_topk, bool) or int(pre_nms_topk) != pre_nms_topk or pre_nms_topk < 1:
            raise ValueError(f"OHEMSampler: pre_nms_topk = {pre_nms_topk!r} must be an integer >= 1.")
        self.nms_thresh = float(nms_thresh)
        self.pre_nms_topk = int(pre_nms_topk)

    @classmethod
    def from_config(cls, cfg, sampler_cfg) -> dict:
        """Arguments from a sampler node (e.g. MODEL.RETINANET.SAMPLER), with its NMS_THRESH."""
        return {**super().from_config(cfg, sampler_cfg), "nms_thresh": sampler_cfg.NMS_THRESH}

    def forward(
        self, match_labels: Tensor, losses: Optional[Tensor] = None, boxes: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor]:
        """``match_labels (R,)``, ``losses (R,)``, ``boxes (R, 4)`` xyxy -> ``(positive_idx (P,),
        negative_idx (Q,))`` int64, each in decreasing-loss order."""
        num = match_labels.shape[0]
        if losses is None or boxes is None:
            raise ValueError("OHEMSampler needs the per-example losses (R,) and predicted boxes (R, 4); got None.")
        if match_labels.dim() != 1 or losses.shape != (num,) or boxes.shape != (num, 4):
            raise ValueError(
                f"OHEMSampler expects match_labels (R,), losses (R,) and boxes (R, 4); got "
                f"{tuple(match_labels.shape)}, {tuple(losses.shape)} and {tuple(boxes.shape)}."
            )
        examples = ((match_labels == POSITIVE) | (match_labels == NEGATIVE)).nonzero().squeeze(1)
        ex_losses = losses.index_select(0, examples)
        ex_positive = match_labels.index_select(0, examples) == POSITIVE
        batch, max_pos = self.batch_size_per_image, self.max_positive
        k = self.pre_nms_topk
        while True:
            candidates = self._candidates(ex_losses, ex_positive, k)
            kept = self._nms_in_loss_order(candidates, ex_losses, boxes, examples)
            pos, neg = self._take(kept, ex_positive, batch, max_pos)
            if candidates.numel() == examples.numel() or self._decided(pos, neg, ex_positive, k):
                return examples[pos], examples[neg]
            k *= 4

    def _candidates(self, losses: Tensor, positive: Tensor, k: int) -> Tensor:
        """Sorted example indices: the k highest losses, and the k highest foreground ones with a ratio."""
        if k >= losses.numel():
            return torch.arange(losses.numel(), device=losses.device)
        chosen = losses.topk(k).indices
        if self.positive_fraction >= 0:
            pos = positive.nonzero().squeeze(1)
            pos = pos[losses[pos].topk(min(k, pos.numel())).indices]
            chosen = torch.cat((chosen, pos))
        return torch.unique(chosen)

    def _nms_in_loss_order(self, candidates: Tensor, losses: Tensor, boxes: Tensor, examples: Tensor) -> Tensor:
        """NMS survivors among ``candidates`` (sorted example indices, into ``losses`` and
        ``examples``; ``boxes`` is indexed by ``examples``), in decreasing loss, ties by index."""
        order = losses[candidates].sort(descending=True, stable=True).indices
        ordered = candidates[order]
        # Scores by rank, so the NMS visits exactly this order whatever the ties among losses.
        rank_scores = torch.arange(ordered.numel(), 0, -1, device=ordered.device, dtype=torch.float32)
        keep = nms(boxes.index_select(0, examples[ordered]).float(), rank_scores, self.nms_thresh)
        return ordered[keep]

    def _decided(self, pos: Tensor, neg: Tensor, positive: Tensor, k: int) -> bool:
        """Whether more candidates could not change the sample: it is full, and with a ratio its
        foreground quota is met or every foreground example was a candidate."""
        if pos.numel() + neg.numel() < self.batch_size_per_image:
            return False
        if self.positive_fraction < 0 or pos.numel() == self.max_positive:
            return True
        return int(positive.sum()) <= k

    def _take(self, kept: Tensor, positive: Tensor, batch: int, max_pos: int) -> Tuple[Tensor, Tensor]:
        """Foreground and background picks from ``kept`` (in order) under the B and P limits."""
        is_pos = positive[kept]
        if self.positive_fraction < 0:  # no ratio: the first B survivors of either kind
            kept = kept[:batch]
            is_pos = is_pos[:batch]
            return kept[is_pos], kept[~is_pos]
        pos = kept[is_pos][:max_pos]
        neg = kept[~is_pos][: batch - pos.numel()]
        return pos, neg

    def extra_repr(self) -> str:
        """The base settings plus the NMS threshold and the candidate count, for ``repr``."""
        return f"{super().extra_repr()}, nms_thresh={self.nms_thresh}, pre_nms_topk={self.pre_nms_topk}"

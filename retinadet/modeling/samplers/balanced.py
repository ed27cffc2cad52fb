"""Random foreground/background sampling at a fixed ratio (RPN 1:1, Fast R-CNN 1:3)."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ...registry import SAMPLER_REGISTRY
from ..matchers import NEGATIVE, POSITIVE
from .base import ExampleSampler

__all__ = ["BalancedRandomSampler"]


@SAMPLER_REGISTRY.register()
class BalancedRandomSampler(ExampleSampler):
    """Draw up to ``batch_size_per_image`` examples of one image, at most ``positive_fraction`` of
    them foreground, uniformly at random (torch's global generator); background fills the rest.

    Called as ``sampler(match_labels)`` with ``match_labels (R,)`` holding the matcher's NEGATIVE /
    IGNORE / POSITIVE; returns ``(positive_idx (P,), negative_idx (Q,))`` int64 indices into R with
    P = min(#POSITIVE, int(B * fraction)) and Q = min(#NEGATIVE, B - P). IGNORE is never drawn.
    ``losses`` and ``boxes`` are accepted for the common sampler call and not used.

    ``needs_losses = False``: it is called with the match labels alone.
    """

    needs_losses = False

    def forward(
        self, match_labels: Tensor, losses: Optional[Tensor] = None, boxes: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor]:
        """``match_labels (R,)`` -> ``(positive_idx (P,), negative_idx (Q,))`` int64, in random order."""
        positive = (match_labels == POSITIVE).nonzero().squeeze(1)
        negative = (match_labels == NEGATIVE).nonzero().squeeze(1)
        num_pos = min(positive.numel(), self.max_positive)
        num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
        pos_perm = torch.randperm(positive.numel(), device=positive.device)[:num_pos]
        neg_perm = torch.randperm(negative.numel(), device=negative.device)[:num_neg]
        return positive[pos_perm], negative[neg_perm]

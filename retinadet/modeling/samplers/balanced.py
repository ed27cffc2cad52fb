"""Random foreground/background sampling at a fixed ratio (RPN 1:1, Fast R-CNN 1:3)."""
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from ...registry import SAMPLER_REGISTRY
from ..matchers import NEGATIVE, POSITIVE

__all__ = ["BalancedRandomSampler", "check_sampler_args"]


def check_sampler_args(batch_size_per_image: int, positive_fraction: float, where: str, allow_no_ratio: bool) -> None:
    """Raise ValueError naming ``where`` unless the batch size is >= 1 and the fraction lies in [0, 1]
    (or is < 0 when ``allow_no_ratio``)."""
    if isinstance(batch_size_per_image, bool) or int(batch_size_per_image) != batch_size_per_image \
            or batch_size_per_image < 1:
        raise ValueError(f"{where}: batch_size_per_image = {batch_size_per_image!r} must be an integer >= 1.")
    valid = 0.0 <= positive_fraction <= 1.0 or (allow_no_ratio and positive_fraction < 0)
    if not valid:
        extra = ", or < 0 for no ratio" if allow_no_ratio else ""
        raise ValueError(f"{where}: positive_fraction = {positive_fraction!r} must lie in [0, 1]{extra}.")


@SAMPLER_REGISTRY.register()
class BalancedRandomSampler(nn.Module):
    """Draw up to ``batch_size_per_image`` examples of one image, at most ``positive_fraction`` of
    them foreground, uniformly at random (torch's global generator); background fills the rest.

    Called as ``sampler(match_labels)`` with ``match_labels (R,)`` holding the matcher's NEGATIVE /
    IGNORE / POSITIVE; returns ``(positive_idx (P,), negative_idx (Q,))`` int64 indices into R with
    P = min(#POSITIVE, int(B * fraction)) and Q = min(#NEGATIVE, B - P). IGNORE is never drawn.
    ``losses`` and ``boxes`` are accepted for the common sampler call and not used.
    """

    needs_losses = False

    def __init__(self, batch_size_per_image: int, positive_fraction: float):
        super().__init__()
        check_sampler_args(batch_size_per_image, positive_fraction, "BalancedRandomSampler", allow_no_ratio=False)
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = float(positive_fraction)

    @classmethod
    def from_config(cls, cfg, sampler_cfg) -> dict:
        """Arguments from a sampler node (e.g. MODEL.RPN.SAMPLER)."""
        return {
            "batch_size_per_image": sampler_cfg.BATCH_SIZE_PER_IMAGE,
            "positive_fraction": sampler_cfg.POSITIVE_FRACTION,
        }

    def forward(
        self, match_labels: Tensor, losses: Optional[Tensor] = None, boxes: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor]:
        positive = (match_labels == POSITIVE).nonzero().squeeze(1)
        negative = (match_labels == NEGATIVE).nonzero().squeeze(1)
        num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
        num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
        pos_perm = torch.randperm(positive.numel(), device=positive.device)[:num_pos]
        neg_perm = torch.randperm(negative.numel(), device=negative.device)[:num_neg]
        return positive[pos_perm], negative[neg_perm]

    def extra_repr(self) -> str:
        return f"batch_size_per_image={self.batch_size_per_image}, positive_fraction={self.positive_fraction}"

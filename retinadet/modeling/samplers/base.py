"""What every training-example sampler shares: a per-image budget of examples and a foreground share."""
from torch import nn

__all__ = ["ExampleSampler", "check_sampler_args"]


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


class ExampleSampler(nn.Module):
    """Base of the SAMPLER_REGISTRY samplers: up to ``batch_size_per_image`` (B) examples of one image,
    at most ``max_positive`` of them foreground.

    A subclass implements ``forward(match_labels (R,), losses=None, boxes=None) -> (positive_idx (P,),
    negative_idx (Q,))``, int64 indices into R; ``match_labels`` holds the matcher's NEGATIVE / IGNORE /
    POSITIVE, and IGNORE is never drawn.

    Args:
        batch_size_per_image: B, an integer >= 1.
        positive_fraction: the most foreground share of B, in [0, 1]; a subclass with
            ``allow_no_ratio`` also takes a value < 0, meaning no foreground quota.
    """

    # needs_losses: True if forward needs each example's loss (R,) and predicted box (R, 4) xyxy, which
    # the caller computes without gradient; False if it is called with the match labels alone.
    needs_losses: bool = False
    # allow_no_ratio: whether positive_fraction < 0 (no foreground quota) is accepted.
    allow_no_ratio: bool = False

    def __init__(self, batch_size_per_image: int, positive_fraction: float):
        super().__init__()
        check_sampler_args(batch_size_per_image, positive_fraction, type(self).__name__, self.allow_no_ratio)
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = float(positive_fraction)

    @classmethod
    def from_config(cls, cfg, sampler_cfg) -> dict:
        """Arguments from a sampler node (e.g. MODEL.RPN.SAMPLER or MODEL.RETINANET.SAMPLER)."""
        return {
            "batch_size_per_image": sampler_cfg.BATCH_SIZE_PER_IMAGE,
            "positive_fraction": sampler_cfg.POSITIVE_FRACTION,
        }

    @property
    def max_positive(self) -> int:
        """The most foreground examples per image: int(B * positive_fraction), or B without a ratio."""
        if self.positive_fraction < 0:
            return self.batch_size_per_image
        return int(self.batch_size_per_image * self.positive_fraction)

    def extra_repr(self) -> str:
        """The budget and the foreground share, shown in ``repr(sampler)``."""
        return f"batch_size_per_image={self.batch_size_per_image}, positive_fraction={self.positive_fraction}"

"""The RPN head of Faster R-CNN: objectness and box deltas for every anchor, shared across levels."""
from typing import List, Sequence, Tuple

from torch import Tensor, nn

from ...registry import HEAD_REGISTRY
from ..shape_spec import ShapeSpec

__all__ = ["StandardRPNHead"]


@HEAD_REGISTRY.register()
class StandardRPNHead(nn.Module):
    """3x3 conv + ReLU, then a 1x1 conv to A objectness logits and a 1x1 conv to 4A box deltas.

    Weights are shared across levels. Every conv is initialised normal(0, 0.01) with zero bias
    (Faster R-CNN, torchvision and detectron2). Layers: ``conv``, ``objectness_logits``,
    ``anchor_deltas``.

    Args:
        input_shape: one ShapeSpec per pyramid level; all must have the same channels.
        num_anchors: A, anchors per location (the same on every level).
    """

    def __init__(self, input_shape: Sequence[ShapeSpec], num_anchors: int):
        super().__init__()
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(f"StandardRPNHead needs equal channels on every level; got {sorted(channels)}.")
        if isinstance(num_anchors, bool) or int(num_anchors) != num_anchors or num_anchors < 1:
            raise ValueError(f"StandardRPNHead num_anchors = {num_anchors!r} must be an integer >= 1.")
        in_channels = channels.pop()
        self.num_anchors = int(num_anchors)
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1)
        self.objectness_logits = nn.Conv2d(in_channels, self.num_anchors, kernel_size=1)
        self.anchor_deltas = nn.Conv2d(in_channels, self.num_anchors * 4, kernel_size=1)
        for conv in (self.conv, self.objectness_logits, self.anchor_deltas):
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.constant_(conv.bias, 0.0)

    @classmethod
    def from_config(cls, cfg, input_shape: Sequence[ShapeSpec], num_anchors: int) -> dict:
        """Shapes from the neck and A from the anchor generator; no config keys of its own."""
        return {"input_shape": input_shape, "num_anchors": num_anchors}

    def forward(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """
        Args:
            features: pyramid levels, each (N, C, Hi, Wi).

        Returns:
            objectness_per_level: list of (N, Hi*Wi*A) logits.
            deltas_per_level: list of (N, Hi*Wi*A, 4) box deltas (dx, dy, dw, dh).
            Both are ordered by row y, then column x, then anchor a, like the anchors.
        """
        objectness, deltas = [], []
        for feature in features:
            t = self.conv(feature).relu()
            n, _, h, w = feature.shape
            # (N, A, H, W) -> (N, H, W, A); (N, A*4, H, W) -> (N, H, W, A, 4).
            objectness.append(self.objectness_logits(t).permute(0, 2, 3, 1).reshape(n, -1))
            d = self.anchor_deltas(t).view(n, self.num_anchors, 4, h, w)
            deltas.append(d.permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
        return objectness, deltas

    def extra_repr(self) -> str:
        return f"num_anchors={self.num_anchors}"

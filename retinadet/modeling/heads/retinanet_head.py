"""RetinaNet's dense head: a class subnet and a box subnet, each shared across pyramid levels."""
import math
from typing import List, Sequence, Tuple

from torch import Tensor, nn

from ...registry import HEAD_REGISTRY
from ..norm import get_norm
from ..shape_spec import ShapeSpec

__all__ = ["RetinaNetHead"]


def _subnet(channels: int, num_convs: int, norm: str) -> nn.Sequential:
    """num_convs x (3x3 conv, optional norm, ReLU) at constant width."""
    layers: List[nn.Module] = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(channels, channels, 3, padding=1, bias=not norm))
        norm_layer = get_norm(norm, channels)
        if norm_layer is not None:
            layers.append(norm_layer)
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _flatten_level(x: Tensor, last_dim: int) -> Tensor:
    """(N, A*D, H, W) -> (N, H*W*A, D), location-major like the anchors."""
    n, _, h, w = x.shape
    return x.view(n, -1, last_dim, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, last_dim)


@HEAD_REGISTRY.register()
class RetinaNetHead(nn.Module):
    """The paper's class and box subnets (Sec. 4): 4 x (3x3 conv, ReLU), then K*A / 4*A outputs.

    Weights are shared across levels and not between the two subnets. Every conv is initialised
    normal(0, 0.01) with zero bias, except the class output bias b = -log((1 - pi) / pi), so that
    every anchor starts with foreground probability pi (the paper's prior, pi = 0.01).
    """

    def __init__(
        self,
        input_shape: Sequence[ShapeSpec],
        num_classes: int,
        num_anchors: int,
        num_convs: int = 4,
        norm: str = "",
        prior_prob: float = 0.01,
    ):
        """
        Args:
            input_shape: one ShapeSpec per pyramid level; all must have the same channels.
            num_classes: K, object classes without background.
            num_anchors: A, anchors per location.
            num_convs: conv layers in each subnet.
            norm: "" or a norm name of ``retinadet.modeling.norm`` (e.g. "GN").
            prior_prob: pi of the class-bias initialisation, in (0, 1).
        """
        super().__init__()
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(f"RetinaNetHead needs equal channels on every level; got {channels}.")
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"prior_prob must be in (0, 1); got {prior_prob}.")
        if num_classes < 1 or num_anchors < 1:
            raise ValueError(f"num_classes and num_anchors must be >= 1; got {num_classes}, {num_anchors}.")
        in_channels = channels.pop()
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.cls_subnet = _subnet(in_channels, num_convs, norm)
        self.bbox_subnet = _subnet(in_channels, num_convs, norm)
        self.cls_score = nn.Conv2d(in_channels, num_anchors * num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, 3, padding=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, mean=0.0, std=0.01)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0.0)
        nn.init.constant_(self.cls_score.bias, -math.log((1 - prior_prob) / prior_prob))

    @classmethod
    def from_config(cls, cfg, input_shape: Sequence[ShapeSpec], num_anchors: int) -> dict:
        """Arguments from cfg.MODEL.HEAD and MODEL.RETINANET.NUM_CLASSES; shapes from the neck."""
        return {
            "input_shape": input_shape,
            "num_classes": cfg.MODEL.RETINANET.NUM_CLASSES,
            "num_anchors": num_anchors,
            "num_convs": cfg.MODEL.HEAD.NUM_CONVS,
            "norm": cfg.MODEL.HEAD.NORM,
            "prior_prob": cfg.MODEL.HEAD.PRIOR_PROB,
        }

    def forward(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """
        Args:
            features: pyramid levels, each (N, C, Hi, Wi).

        Returns:
            logits_per_level: list of (N, Hi*Wi*A, K) class logits.
            deltas_per_level: list of (N, Hi*Wi*A, 4) box deltas (dx, dy, dw, dh).
        """
        logits = [_flatten_level(self.cls_score(self.cls_subnet(f)), self.num_classes) for f in features]
        deltas = [_flatten_level(self.bbox_pred(self.bbox_subnet(f)), 4) for f in features]
        return logits, deltas

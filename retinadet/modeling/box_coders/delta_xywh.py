"""(dx, dy, dw, dh) box coder of R-CNN / RetinaNet: boxes <-> deltas relative to anchors."""
import math
from typing import Sequence, Tuple

import torch
from torch import Tensor

from ...registry import BOX_CODER_REGISTRY

__all__ = ["DeltaXYWHBoxCoder"]

# Smallest gt width/height used by encode(). A degenerate (zero-width or zero-height) gt box would
# otherwise give log(0) = -inf, and its loss and gradient would be inf/NaN; clamping gives a large but
# finite dw/dh instead. Any real box is far wider than this, so its encoding is unchanged.
_MIN_GT_SIZE = 1e-6


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """The promoted dtype of ``tensors``, raised to at least float32 (fp16/bf16 lack the range of exp)."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _check_pair(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if torch.jit.is_tracing():  # static shapes of a graph being exported: checked when run eagerly
        return
    if a.dim() != 2 or a.shape[-1] != 4 or a.shape != b.shape:
        raise ValueError(
            f"DeltaXYWHBoxCoder expects {name_a} and {name_b} of the same shape (R, 4); got "
            f"{tuple(a.shape)} and {tuple(b.shape)}."
        )


def _widths_centers(boxes: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Width, height, centre x, centre y of ``boxes (R, 4)`` xyxy (torchvision's arithmetic)."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    return widths, heights, ctr_x, ctr_y


@BOX_CODER_REGISTRY.register()
class DeltaXYWHBoxCoder:
    """Encode boxes as centre offsets and log size ratios w.r.t. anchors (Girshick et al., R-CNN).

    ``dx = wx * (gx - ax) / aw``, ``dy = wy * (gy - ay) / ah``, ``dw = ww * log(gw / aw)``,
    ``dh = wh * log(gh / ah)`` with (x, y) box centres and (w, h) sizes. The arithmetic follows
    torchvision's ``BoxCoder.encode_single`` / ``decode_single`` so results agree to float precision.
    Computation happens in float32 or wider: half-precision inputs are cast up.

    Args:
        weights: multipliers ``(wx, wy, ww, wh)`` of the deltas, all > 0.
        scale_clamp: upper clamp of ``dw``, ``dh`` (after dividing by the weights) before ``exp`` in
            decode, so a wild prediction gives at most ``exp(scale_clamp)`` times the anchor size.
    """

    def __init__(
        self,
        weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        scale_clamp: float = math.log(1000.0 / 16),
    ) -> None:
        weights = tuple(float(w) for w in weights)
        if len(weights) != 4 or not all(math.isfinite(w) and w > 0 for w in weights):
            raise ValueError(
                f"DeltaXYWHBoxCoder weights must be 4 finite positive numbers (wx, wy, ww, wh); "
                f"got {weights}."
            )
        if not scale_clamp > 0:
            raise ValueError(f"DeltaXYWHBoxCoder scale_clamp must be > 0; got {scale_clamp}.")
        self.weights = weights
        self.scale_clamp = float(scale_clamp)

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Arguments from ``cfg.MODEL.BOX_CODER.{WEIGHTS, SCALE_CLAMP}``."""
        return {
            "weights": tuple(cfg.MODEL.BOX_CODER.WEIGHTS),
            "scale_clamp": cfg.MODEL.BOX_CODER.SCALE_CLAMP,
        }

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        """Deltas ``(R, 4)`` that turn ``anchors (R, 4)`` into ``boxes (R, 4)`` (both xyxy pixels).

        Gt widths/heights below 1e-6 are clamped to 1e-6 so degenerate boxes encode to finite values.
        """
        _check_pair("boxes", boxes, "anchors", anchors)
        dtype = _compute_dtype(boxes, anchors)
        boxes, anchors = boxes.to(dtype), anchors.to(dtype)
        wx, wy, ww, wh = self.weights

        a_widths, a_heights, a_ctr_x, a_ctr_y = _widths_centers(anchors)
        g_widths, g_heights, g_ctr_x, g_ctr_y = _widths_centers(boxes)

        dx = wx * (g_ctr_x - a_ctr_x) / a_widths
        dy = wy * (g_ctr_y - a_ctr_y) / a_heights
        dw = ww * torch.log(g_widths.clamp(min=_MIN_GT_SIZE) / a_widths)
        dh = wh * torch.log(g_heights.clamp(min=_MIN_GT_SIZE) / a_heights)
        return torch.stack((dx, dy, dw, dh), dim=1)

    def decode(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        """Boxes ``(R, 4)`` xyxy pixels obtained by applying ``deltas (R, 4)`` to ``anchors (R, 4)``."""
        _check_pair("deltas", deltas, "anchors", anchors)
        dtype = _compute_dtype(deltas, anchors)
        deltas, anchors = deltas.to(dtype), anchors.to(dtype)
        wx, wy, ww, wh = self.weights

        widths, heights, ctr_x, ctr_y = _widths_centers(anchors)
        dx = deltas[:, 0] / wx
        dy = deltas[:, 1] / wy
        # Clamp before exp(): an untrained head can emit large dw/dh, and exp() would overflow.
        dw = torch.clamp(deltas[:, 2] / ww, max=self.scale_clamp)
        dh = torch.clamp(deltas[:, 3] / wh, max=self.scale_clamp)

        pred_ctr_x = dx * widths + ctr_x
        pred_ctr_y = dy * heights + ctr_y
        half_w = 0.5 * (torch.exp(dw) * widths)
        half_h = 0.5 * (torch.exp(dh) * heights)
        return torch.stack(
            (pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=1
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weights={self.weights}, scale_clamp={self.scale_clamp})"

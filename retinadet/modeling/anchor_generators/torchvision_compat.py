"""Anchors exactly as torchvision's RetinaNet makes them, for running its weights unchanged."""
from typing import Tuple

import torch
from torch import Tensor

from ...registry import ANCHOR_GENERATOR_REGISTRY
from ...utils.tracing import is_tracing
from .default import DefaultAnchorGenerator

__all__ = ["TorchvisionAnchorGenerator"]


@ANCHOR_GENERATOR_REGISTRY.register()
class TorchvisionAnchorGenerator(DefaultAnchorGenerator):
    """torchvision ``AnchorGenerator`` as built by its RetinaNet, with the arguments of the default one.

    It differs from :class:`DefaultAnchorGenerator` in three ways, each of which changes the boxes:

    - anchor sizes are truncated to integers, ``int(size * scale)`` (40 and 50 rather than 40.3
      and 50.8 for size 32);
    - cell anchors are ratio-major (for each ratio, all scales), with half-width
      ``size / sqrt(r) / 2`` and half-height ``size * sqrt(r) / 2`` rounded to integers;
    - the stride of a level is ``image_size // grid_size`` on each axis rather than the feature
      stride: a 320-wide batch has 3 columns at P7 and so a stride of 106, not 128.

    Args: as :class:`DefaultAnchorGenerator` (``offset`` 0 reproduces torchvision).
    """

    def make_cell_anchors(self, size: float) -> Tensor:
        """Return (A, 4) xyxy anchors centred on (0, 0), rounded, for one level of base ``size``."""
        # float32 throughout, in torchvision's order of operations, so that .round() breaks
        # ties on exactly the same values.
        sizes = torch.tensor([int(size * scale) for scale in self.scales], dtype=torch.float32)
        ratios = torch.tensor(self.aspect_ratios, dtype=torch.float32)
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * sizes[None, :]).reshape(-1)
        hs = (h_ratios[:, None] * sizes[None, :]).reshape(-1)
        return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()

    def level_stride(
        self, level: int, grid_size: Tuple[int, int], image_size: Tuple[int, int]
    ) -> Tuple[float, float]:
        """(stride_y, stride_x) = (Hp // Hi, Wp // Wi), torchvision's per-axis integer stride."""
        stride_y, stride_x = image_size[0] // grid_size[0], image_size[1] // grid_size[1]
        if is_tracing():  # traced sizes: the strides stay in the exported graph
            return stride_y.to(torch.float32), stride_x.to(torch.float32)
        return float(stride_y), float(stride_x)

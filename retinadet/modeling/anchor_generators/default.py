"""Anchors of the RetinaNet paper (and detectron2): A = scales x aspect ratios per location per level."""
import math
from collections import OrderedDict
from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn

from ...config import CfgNode
from ...registry import ANCHOR_GENERATOR_REGISTRY
from ...utils.tracing import size_of
from ..shape_spec import ShapeSpec

__all__ = ["DefaultAnchorGenerator", "grid_anchors"]


class _BufferList(nn.Module):
    """Tensors kept as non-persistent buffers: ``.to(device)`` moves them, checkpoints skip them."""

    def __init__(self, tensors: Sequence[Tensor]):
        super().__init__()
        for i, t in enumerate(tensors):
            self.register_buffer(str(i), t, persistent=False)

    def __len__(self) -> int:
        return len(self._buffers)

    def __iter__(self):
        return iter(self._buffers.values())

    def __getitem__(self, i: int) -> Tensor:
        return self._buffers[str(i)]


def grid_anchors(
    cell_anchors: Tensor, grid_size: Tuple[int, int], stride: Tuple[float, float], offset: float
) -> Tensor:
    """Tile cell anchors over a feature grid.

    Args:
        cell_anchors: (A, 4) xyxy anchors centred on (0, 0), absolute pixels.
        grid_size: (H, W) of the feature map.
        stride: (stride_y, stride_x) in input pixels per feature cell.
        offset: anchor centre offset in units of the stride (0 = cell corner, 0.5 = cell centre).

    Returns:
        (H * W * A, 4) xyxy absolute pixels, ordered by row y, then column x, then anchor a;
        on the device of ``cell_anchors``, float32.
    """
    height, width = grid_size
    stride_y, stride_x = stride
    device = cell_anchors.device
    shifts_x = torch.arange(width, dtype=torch.float32, device=device) * stride_x + offset * stride_x
    shifts_y = torch.arange(height, dtype=torch.float32, device=device) * stride_y + offset * stride_y
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
    cells = cell_anchors.to(dtype=torch.float32)
    return (shifts.view(-1, 1, 4) + cells.view(1, -1, 4)).reshape(-1, 4)


def _check_positive(values: Sequence[float], what: str) -> List[float]:
    values = list(values)
    if len(values) == 0 or any(not isinstance(v, (int, float)) or v <= 0 for v in values):
        raise ValueError(
            f"Anchor generator {what} must be a non-empty list of positive numbers, got {values}."
        )
    return [float(v) for v in values]


@ANCHOR_GENERATOR_REGISTRY.register()
class DefaultAnchorGenerator(nn.Module):
    """Anchors at every feature cell of every level, as in the paper and detectron2.

    Level i has base size ``sizes[i]`` (sqrt of the area) and stride ``strides[i]``. At each location
    there are ``num_anchors = len(scales) * len(aspect_ratios)`` anchors: for each size * scale (outer),
    for each ratio r = h / w (inner), width sqrt(area / r) and height r * width, centred on
    (x * stride + offset * stride, y * stride + offset * stride) for the cell at column x, row y.

    Args:
        strides: stride of each level in input pixels (e.g. 8, 16, 32, 64, 128 for P3-P7).
        sizes: base anchor size per level (e.g. 32, 64, 128, 256, 512).
        scales: size multipliers shared by all levels.
        aspect_ratios: height / width ratios shared by all levels.
        offset: anchor centre offset in units of the stride, in [0, 1).
    """

    def __init__(
        self,
        strides: Sequence[int],
        sizes: Sequence[float],
        scales: Sequence[float] = (1.0, 2 ** (1.0 / 3), 2 ** (2.0 / 3)),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        offset: float = 0.0,
    ):
        super().__init__()
        self.strides = [int(s) for s in _check_positive(strides, "strides")]
        self.sizes = _check_positive(sizes, "sizes")
        self.scales = _check_positive(scales, "scales")
        self.aspect_ratios = _check_positive(aspect_ratios, "aspect_ratios")
        if len(self.sizes) != len(self.strides):
            raise ValueError(
                f"Anchor generator got {len(self.sizes)} sizes {self.sizes} for {len(self.strides)} "
                f"feature levels with strides {self.strides}; give one size per level."
            )
        if not 0.0 <= offset < 1.0:
            raise ValueError(f"Anchor generator offset must be in [0, 1), got {offset}.")
        self.offset = float(offset)
        self.num_anchors = len(self.scales) * len(self.aspect_ratios)
        self.cell_anchors = _BufferList([self.make_cell_anchors(size) for size in self.sizes])
        # Anchors depend only on the grid, the stride and the cell anchors, and the same sizes come
        # back step after step: computed once per key, not per call. Not a buffer, so checkpoints
        # never see it.
        self._grid_cache: "OrderedDict[tuple, Tensor]" = OrderedDict()

    # Level grids kept, least recently used dropped first: 32 is about 6 batch sizes of 5 levels,
    # at most ~20 MB of anchors at 800 x 1333.
    _MAX_CACHED_GRIDS = 32

    def _apply(self, fn, *args, **kwargs):
        # .to() / .half() etc. replace the cell anchors: anchors computed from the old ones are stale.
        self._grid_cache = OrderedDict()
        return super()._apply(fn, *args, **kwargs)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: List[ShapeSpec]) -> dict:
        """Strides from the shapes of the levels used; sizes etc. from cfg.MODEL.ANCHOR_GENERATOR."""
        sizes = list(cfg.MODEL.ANCHOR_GENERATOR.SIZES)
        strides = [shape.stride for shape in input_shape]
        if len(sizes) != len(strides):
            raise ValueError(
                f"MODEL.ANCHOR_GENERATOR.SIZES has {len(sizes)} entries {sizes} but the head uses "
                f"{len(strides)} feature levels with strides {strides}; give one size per level."
            )
        return {
            "strides": strides,
            "sizes": sizes,
            "scales": list(cfg.MODEL.ANCHOR_GENERATOR.SCALES),
            "aspect_ratios": list(cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS),
            "offset": cfg.MODEL.ANCHOR_GENERATOR.OFFSET,
        }

    def make_cell_anchors(self, size: float) -> Tensor:
        """Return (A, 4) xyxy anchors centred on (0, 0) for one level of base ``size``."""
        boxes = []
        for scale in self.scales:
            area = (size * scale) ** 2
            for ratio in self.aspect_ratios:
                w = math.sqrt(area / ratio)
                h = ratio * w
                boxes.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
        return torch.tensor(boxes, dtype=torch.float32)

    def level_stride(
        self, level: int, grid_size: Tuple[int, int], image_size: Tuple[int, int]
    ) -> Tuple[float, float]:
        """(stride_y, stride_x) of ``level``: its configured stride on both axes."""
        return float(self.strides[level]), float(self.strides[level])

    def forward(self, features: List[Tensor], image_size: Tuple[int, int]) -> List[Tensor]:
        """Anchors for each level.

        Args:
            features: per level (N, C, Hi, Wi); only their sizes and device are used.
            image_size: (Hp, Wp) of the padded batch.

        Returns:
            per level (Hi * Wi * A, 4) xyxy absolute pixels, float32, on the features' device,
            ordered by row y, then column x, then anchor a. The tensors are cached and returned
            again for the same grid: treat them as read-only.
        """
        if len(features) != len(self.cell_anchors):
            raise ValueError(
                f"{type(self).__name__} was built for {len(self.cell_anchors)} levels (strides "
                f"{self.strides}) but got {len(features)} feature maps."
            )
        anchors_per_level = []
        for level, (feature, cells) in enumerate(zip(features, self.cell_anchors)):
            # Traced for export: the grid stays the features' traced size, so the graph takes any size.
            grid_size = (size_of(feature, -2), size_of(feature, -1))
            stride = self.level_stride(level, grid_size, image_size)
            anchors = self._cached_grid_anchors(level, cells, grid_size, stride, feature.device)
            anchors_per_level.append(anchors)
        return anchors_per_level

    def _cached_grid_anchors(
        self, level: int, cells: Tensor, grid_size: Tuple[int, int], stride: Tuple[float, float], device
    ) -> Tensor:
        """``grid_anchors`` of one level, from the cache when this grid was seen before."""
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return grid_anchors(cells.to(device), grid_size, stride, self.offset)
        # _version changes when the cell anchors are edited in place. Tensors made in inference mode
        # must not reach autograd later (GIoU decodes anchors with gradients): they are kept apart.
        key = (level, grid_size, stride, str(device), cells._version, torch.is_inference_mode_enabled())
        anchors = self._grid_cache.get(key)
        if anchors is None:
            anchors = grid_anchors(cells.to(device), grid_size, stride, self.offset)
            self._grid_cache[key] = anchors
            if len(self._grid_cache) > self._MAX_CACHED_GRIDS:
                self._grid_cache.popitem(last=False)
        else:
            self._grid_cache.move_to_end(key)
        return anchors

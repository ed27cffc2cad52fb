"""Multi-level ROIAlign: each box is pooled from the pyramid level its size calls for (FPN, eq. 1)."""
import math
from typing import List, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

__all__ = ["assign_fpn_levels", "ROIPooler"]


def assign_fpn_levels(
    boxes: Tensor,
    min_level: int,
    max_level: int,
    canonical_box_size: float = 224,
    canonical_level: int = 4,
    eps: float = 1e-6,
) -> Tensor:
    """Pyramid level index of each box, counted from ``min_level``.

    ``level = floor(canonical_level + log2(sqrt(w * h) / canonical_box_size) + eps)`` clamped to
    ``[min_level, max_level]`` (the FPN paper's eq. 1 with torchvision's ``LevelMapper`` arithmetic:
    area without +1, eps added before the floor, computed in the boxes' dtype).

    Args:
        boxes: ``(R, 4)`` xyxy in input pixels.
        min_level, max_level: pyramid levels (log2 of the stride) of the finest and coarsest map.
    Returns:
        ``(R,)`` int64 in ``[0, max_level - min_level]``.
    """
    sizes = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    levels = torch.floor(
        canonical_level + torch.log2(sizes / canonical_box_size) + torch.tensor(eps, dtype=sizes.dtype)
    )
    levels = torch.clamp(levels, min=min_level, max=max_level)
    return levels.to(torch.int64) - min_level


def _levels_of_strides(strides: Sequence[int]) -> List[int]:
    """log2 of each stride; ValueError unless they are powers of two doubling from one map to the next."""
    strides = [int(s) for s in strides]
    if len(strides) == 0:
        raise ValueError("ROIPooler needs at least one feature map stride; got none.")
    levels = []
    for s in strides:
        level = int(round(math.log2(s))) if s > 0 else -1
        if s <= 0 or 2**level != s:
            raise ValueError(f"ROIPooler needs power-of-two strides; got {s} in strides {strides}.")
        levels.append(level)
    for a, b in zip(levels, levels[1:]):
        if b != a + 1:
            raise ValueError(
                f"ROIPooler needs strides ordered from fine to coarse, each twice the previous one "
                f"(consecutive pyramid levels, e.g. [4, 8, 16, 32]); got {strides}."
            )
    return levels


class ROIPooler(nn.Module):
    """ROIAlign of boxes from a feature pyramid, each box on the level :func:`assign_fpn_levels` picks.

    Numbers equal torchvision's ``MultiScaleRoIAlign`` (which is this with ``aligned=False``) when
    the strides are the ones it infers from the feature sizes. With one map every box uses it.

    Args:
        output_size: side of the square pooled output.
        strides: stride of each feature map given to :meth:`forward`, fine to coarse, powers of two
            each twice the previous one.
        sampling_ratio: ROIAlign sample points per bin side (0: adaptive, ceil(roi size / output size)).
        aligned: shift box coordinates by -0.5 pixel (detectron2's ROIAlignV2) before pooling.
        canonical_box_size, canonical_level: a box of ``sqrt(area) == canonical_box_size`` is pooled
            from ``canonical_level`` (FPN paper: 224 and 4).
    """

    def __init__(
        self,
        output_size: int,
        strides: Sequence[int],
        sampling_ratio: int = 0,
        aligned: bool = True,
        canonical_box_size: float = 224,
        canonical_level: int = 4,
    ):
        super().__init__()
        if isinstance(output_size, bool) or int(output_size) != output_size or output_size < 1:
            raise ValueError(f"ROIPooler output_size = {output_size!r} must be an integer >= 1.")
        if isinstance(sampling_ratio, bool) or int(sampling_ratio) != sampling_ratio or sampling_ratio < 0:
            raise ValueError(
                f"ROIPooler sampling_ratio = {sampling_ratio!r} must be an integer >= 0 (0 = adaptive)."
            )
        if not canonical_box_size > 0:
            raise ValueError(f"ROIPooler canonical_box_size = {canonical_box_size!r} must be > 0.")
        if isinstance(canonical_level, bool) or int(canonical_level) != canonical_level:
            raise ValueError(f"ROIPooler canonical_level = {canonical_level!r} must be an integer.")
        levels = _levels_of_strides(strides)
        self.output_size = (int(output_size), int(output_size))
        self.strides = [int(s) for s in strides]
        self.scales = [1.0 / s for s in self.strides]
        self.min_level, self.max_level = levels[0], levels[-1]
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)
        self.canonical_box_size = canonical_box_size
        self.canonical_level = int(canonical_level)

    def forward(self, features: List[Tensor], boxes: List[Tensor]) -> Tensor:
        """Pool every box of every image.

        Args:
            features: one ``(N, C, Hi, Wi)`` map per stride, in the order of ``strides``.
            boxes: N tensors ``(Ri, 4)`` xyxy in input pixels, one per image of the batch.
        Returns:
            ``(sum Ri, C, output_size, output_size)``, rows in image order then box order.
        """
        if len(features) != len(self.strides):
            raise ValueError(
                f"ROIPooler was built for {len(self.strides)} feature maps (strides {self.strides}); "
                f"got {len(features)}."
            )
        if not torch.jit.is_tracing() and len(boxes) != features[0].shape[0]:
            raise ValueError(
                f"ROIPooler got boxes for {len(boxes)} images and features for a batch of {features[0].shape[0]}."
            )
        concat = torch.cat(boxes, dim=0)
        image_ids = torch.cat(
            [torch.full_like(b[:, :1], i, dtype=concat.dtype) for i, b in enumerate(boxes)]
        )
        rois = torch.cat([image_ids, concat], dim=1)
        if len(features) == 1:
            return self._align(features[0], rois, self.scales[0])

        levels = assign_fpn_levels(
            concat, self.min_level, self.max_level, self.canonical_box_size, self.canonical_level
        )
        first = features[0]
        if torch.jit.is_tracing():
            # Exported graph: every box pooled from every level, each keeping its own level's (a box's
            # pooling does not depend on the others). An indexed write would fix the per-level counts.
            result = self._align(first, rois, self.scales[0])
            for level in range(1, len(features)):
                pooled = self._align(features[level], rois, self.scales[level]).to(result.dtype)
                result = torch.where((levels == level)[:, None, None, None], pooled, result)
            return result
        result = first.new_zeros((rois.shape[0], first.shape[1]) + self.output_size)
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            idx = torch.where(levels == level)[0]
            # Maps of one pyramid may differ in dtype under autocast; the output takes the first's.
            result[idx] = self._align(feature, rois[idx], scale).to(result.dtype)
        return result

    def _align(self, feature: Tensor, rois: Tensor, scale: float) -> Tensor:
        return roi_align(
            feature, rois, output_size=self.output_size, spatial_scale=scale,
            sampling_ratio=self.sampling_ratio, aligned=self.aligned,
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, strides={self.strides}, sampling_ratio={self.sampling_ratio}, "
            f"aligned={self.aligned}, canonical_box_size={self.canonical_box_size}, "
            f"canonical_level={self.canonical_level}"
        )

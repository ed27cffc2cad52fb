"""Tests of the multi-level ROIAlign: FPN level assignment and parity with torchvision's pooler."""
import math
from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align

from retinadet.modeling.roi_heads import ROIPooler, assign_fpn_levels

STRIDES = [4, 8, 16, 32]
NAMES = ["p2", "p3", "p4", "p5"]


def _square(side: float, x0: float = 10.0, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor([[x0, x0, x0 + side, x0 + side]], dtype=dtype)


def test_levels_by_hand():
    boxes = torch.cat([
        _square(224.0),  # canonical size: level 4 exactly
        _square(112.0),  # log2(1/2) = -1: level 3
        _square(111.0),  # 4 + log2(111/224) = 2.987: level 2
        _square(448.0),  # level 5
        _square(447.0),  # 4.998: level 4
        torch.tensor([[0.0, 0.0, 56.0, 224.0]]),  # sqrt(56 * 224) = 112: level 3
        _square(10.0),  # 4 + log2(10/224) = -0.49: clamped up to level 2
        _square(5000.0),  # clamped down to level 5
        torch.tensor([[3.0, 3.0, 3.0, 40.0]]),  # zero area: -inf, clamped to level 2
    ])
    levels = assign_fpn_levels(boxes, min_level=2, max_level=5)
    assert levels.dtype == torch.int64
    assert levels.tolist() == [2, 1, 0, 3, 2, 1, 0, 3, 0]
    # Other canonical choices move the same boxes: 112 at level 4 of (112, 4) and 224 one above.
    levels = assign_fpn_levels(boxes[:2], min_level=2, max_level=5, canonical_box_size=112, canonical_level=4)
    assert levels.tolist() == [3, 2]


def test_eps_rounds_up_a_size_just_below_a_level_boundary():
    # log2(s / 224) = -1e-7: without eps floor(4 - 1e-7) would be level 3; with eps = 1e-6 it is 4.
    side = 224.0 * 2.0 ** -1e-7
    box = _square(side, x0=0.0, dtype=torch.float64)
    assert assign_fpn_levels(box, 2, 5).item() == 2
    assert assign_fpn_levels(box, 2, 5, eps=0.0).item() == 1
    # 2e-6 below the boundary is beyond eps: level 3.
    box = _square(224.0 * 2.0 ** -2e-6, x0=0.0, dtype=torch.float64)
    assert assign_fpn_levels(box, 2, 5).item() == 1


def _features(batch: int, channels: int, height: int, width: int, generator: torch.Generator):
    return OrderedDict(
        (name, torch.randn(batch, channels, math.ceil(height / s), math.ceil(width / s), generator=generator))
        for name, s in zip(NAMES, STRIDES)
    )


def _random_boxes(n: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """Boxes with sides log-uniform in [8, 600] px (clipped to the image) inside a height x width image."""
    sizes = torch.exp(torch.rand(n, 2, generator=generator) * math.log(600 / 8)) * 8
    sizes = torch.minimum(sizes, torch.tensor([width - 1.0, height - 1.0]))
    x0 = torch.rand(n, generator=generator) * (width - sizes[:, 0])
    y0 = torch.rand(n, generator=generator) * (height - sizes[:, 1])
    return torch.stack([x0, y0, x0 + sizes[:, 0], y0 + sizes[:, 1]], dim=1)


def test_pooler_equals_torchvision_multiscale_roi_align():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    height, width = 576, 640  # large enough for boxes of level 5 (sqrt(area) >= 448)
    features = _features(2, 5, height, width, g)
    boxes = [_random_boxes(60, height, width, g), _random_boxes(45, height, width, g)]
    levels = assign_fpn_levels(torch.cat(boxes), 2, 5)
    assert set(levels.tolist()) == {0, 1, 2, 3}, "the boxes must exercise every level"

    reference = MultiScaleRoIAlign(NAMES, 7, 2)(features, boxes, [(height, width), (500, 600)])
    pooler = ROIPooler(7, STRIDES, sampling_ratio=2, aligned=False)
    out = pooler(list(features.values()), boxes)
    assert out.shape == (105, 5, 7, 7)
    assert torch.equal(out, reference)


def test_pooler_single_level_equals_torchvision():
    g = torch.Generator().manual_seed(1)
    feature = torch.randn(1, 3, 20, 24, generator=g)
    boxes = [_random_boxes(30, 160, 192, g)]
    reference = MultiScaleRoIAlign(["p3"], 5, 0)({"p3": feature}, boxes, [(160, 192)])
    out = ROIPooler(5, [8], sampling_ratio=0, aligned=False)([feature], boxes)
    assert torch.equal(out, reference)


def test_aligned_pooling_is_roi_align_v2_on_the_assigned_level():
    g = torch.Generator().manual_seed(2)
    features = _features(1, 4, 128, 128, g)
    box = torch.tensor([[10.3, 20.7, 60.1, 70.9]])  # sqrt(area) ~ 50: level 2 (stride 4)
    assert assign_fpn_levels(box, 2, 5).item() == 0
    out = ROIPooler(7, STRIDES, sampling_ratio=2, aligned=True)(list(features.values()), [box])
    rois = torch.cat([torch.zeros(1, 1), box], dim=1)
    expected = roi_align(features["p2"], rois, 7, spatial_scale=0.25, sampling_ratio=2, aligned=True)
    unaligned = roi_align(features["p2"], rois, 7, spatial_scale=0.25, sampling_ratio=2, aligned=False)
    assert torch.equal(out, expected)
    assert not torch.allclose(out, unaligned, atol=1e-3)


def test_no_boxes_gives_an_empty_result():
    g = torch.Generator().manual_seed(3)
    features = _features(2, 4, 64, 64, g)
    out = ROIPooler(7, STRIDES)(list(features.values()), [torch.zeros(0, 4), torch.zeros(0, 4)])
    assert out.shape == (0, 4, 7, 7)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"strides": [4, 8, 12]}, "power-of-two strides; got 12"),
        ({"strides": [4, 16, 32]}, "each twice the previous one"),
        ({"strides": [8, 4]}, "fine to coarse"),
        ({"strides": []}, "at least one"),
        ({"output_size": 0}, "output_size = 0"),
        ({"sampling_ratio": -1}, "sampling_ratio = -1"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    args = {"output_size": 7, "strides": STRIDES, **kwargs}
    with pytest.raises(ValueError, match=message):
        ROIPooler(**args)


def test_wrong_number_of_maps_is_an_error():
    pooler = ROIPooler(7, STRIDES)
    with pytest.raises(ValueError, match="built for 4 feature maps"):
        pooler([torch.zeros(1, 2, 8, 8)] * 3, [torch.zeros(0, 4)])

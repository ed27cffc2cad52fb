"""Tests of DeltaXYWHBoxCoder: round trip, torchvision parity, clamp, weights, degenerate boxes."""
import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder as TVBoxCoder

from retinadet.config import get_cfg
from retinadet.modeling import build
from retinadet.modeling.box_coders import DeltaXYWHBoxCoder
from retinadet.registry import BOX_CODER_REGISTRY


def _random_boxes(
    generator: torch.Generator, n: int, dtype=torch.float32, min_size: float = 2.0
) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 500
    wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * (300 - min_size) + min_size
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_round_trip(weights):
    generator = torch.Generator().manual_seed(0)
    # Sizes 8..300 px keep every size ratio under exp(scale_clamp) = 62.5, so nothing is clamped.
    boxes = _random_boxes(generator, 1000, min_size=8.0)
    anchors = _random_boxes(generator, 1000, min_size=8.0)
    coder = DeltaXYWHBoxCoder(weights)
    deltas = coder.encode(boxes, anchors)
    assert deltas.shape == (1000, 4)
    decoded = coder.decode(deltas, anchors)
    # float32 rounding of coordinates up to ~800 px: relative error 1e-4 (absolute ~2e-4 px).
    torch.testing.assert_close(decoded, boxes, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_torchvision(weights, dtype):
    generator = torch.Generator().manual_seed(1)
    boxes, anchors = _random_boxes(generator, 500, dtype), _random_boxes(generator, 500, dtype)
    ours = DeltaXYWHBoxCoder(weights)
    theirs = TVBoxCoder(weights)
    # torchvision's encode_single(reference_boxes = gt, proposals = anchors).
    torch.testing.assert_close(ours.encode(boxes, anchors), theirs.encode_single(boxes, anchors))
    deltas = torch.randn(500, 4, generator=generator, dtype=torch.float64).to(dtype) * 3
    torch.testing.assert_close(ours.decode(deltas, anchors), theirs.decode_single(deltas, anchors))


def test_decode_clamps_large_dw_dh():
    coder = DeltaXYWHBoxCoder()
    anchors = torch.tensor([[10.0, 20.0, 42.0, 36.0]], dtype=torch.float64)  # w 32, h 16
    boxes = coder.decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]], dtype=torch.float64), anchors)
    assert torch.isfinite(boxes).all()
    # Clamped at log(1000/16): the width becomes 32 * 62.5 = 2000 and the height 16 * 62.5 = 1000,
    # around the unchanged centre (26, 28).
    assert boxes[0, 2] - boxes[0, 0] == pytest.approx(2000.0, rel=1e-12)
    assert boxes[0, 3] - boxes[0, 1] == pytest.approx(1000.0, rel=1e-12)
    assert boxes[0].tolist() == pytest.approx([26 - 1000, 28 - 500, 26 + 1000, 28 + 500], rel=1e-12)
    # Bit for bit the same as decoding dw = dh = scale_clamp itself.
    clamp = torch.tensor([[0.0, 0.0, coder.scale_clamp, coder.scale_clamp]], dtype=torch.float64)
    assert torch.equal(boxes, coder.decode(clamp, anchors))
    # Below the clamp nothing is clamped.
    boxes = coder.decode(torch.tensor([[0.0, 0.0, math.log(2.0), 0.0]], dtype=torch.float64), anchors)
    assert (boxes[0, 2] - boxes[0, 0]).item() == pytest.approx(64.0, rel=1e-12)


def test_weights_scale_encoding_as_hand_computed():
    # anchor (0, 0, 10, 10): centre (5, 5), size 10 x 10. gt (1, 2, 11, 22): centre (6, 12), 10 x 20.
    # dx = 10 * (6 - 5) / 10 = 1, dy = 10 * (12 - 5) / 10 = 7, dw = 5 * log(10/10) = 0,
    # dh = 5 * log(20/10) = 5 * 0.693147 = 3.465736.
    coder = DeltaXYWHBoxCoder((10.0, 10.0, 5.0, 5.0))
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    gt = torch.tensor([[1.0, 2.0, 11.0, 22.0]])
    deltas = coder.encode(gt, anchors)
    torch.testing.assert_close(deltas, torch.tensor([[1.0, 7.0, 0.0, 3.465736]]))
    # Unit weights: (0.1, 0.7, 0, 0.693147).
    torch.testing.assert_close(
        DeltaXYWHBoxCoder().encode(gt, anchors), torch.tensor([[0.1, 0.7, 0.0, 0.693147]])
    )
    torch.testing.assert_close(coder.decode(deltas, anchors), gt)


def test_zero_area_gt_encodes_finite():
    coder = DeltaXYWHBoxCoder()
    anchors = torch.tensor([[0.0, 0.0, 32.0, 32.0], [0.0, 0.0, 32.0, 32.0]])
    gt = torch.tensor([[5.0, 5.0, 5.0, 20.0], [3.0, 3.0, 3.0, 3.0]], requires_grad=True)
    deltas = coder.encode(gt, anchors)
    assert torch.isfinite(deltas).all()
    # Width clamped at 1e-6: dw = log(1e-6 / 32) = -17.2863; the real height keeps log(15/32).
    assert deltas[0, 2].item() == pytest.approx(math.log(1e-6 / 32), rel=1e-5)
    assert deltas[0, 3].item() == pytest.approx(math.log(15 / 32), rel=1e-5)
    deltas.sum().backward()
    assert torch.isfinite(gt.grad).all()


def test_half_precision_inputs_computed_in_float32():
    coder = DeltaXYWHBoxCoder()
    anchors = torch.tensor([[0.0, 0.0, 64.0, 64.0]], dtype=torch.float16)
    deltas = torch.tensor([[0.0, 0.0, 4.0, 4.0]], dtype=torch.float16)
    boxes = coder.decode(deltas, anchors)
    assert boxes.dtype == torch.float32
    # exp(4) * 64 = 3494.2 would be rounded to 3494 in fp16; float32 keeps the fraction.
    assert (boxes[0, 2] - boxes[0, 0]).item() == pytest.approx(64 * math.exp(4.0), rel=1e-6)
    assert coder.encode(anchors, anchors).dtype == torch.float32


def test_invalid_arguments():
    with pytest.raises(ValueError, match="weights"):
        DeltaXYWHBoxCoder((1.0, 1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="scale_clamp"):
        DeltaXYWHBoxCoder(scale_clamp=0.0)
    with pytest.raises(ValueError, match=r"\(R, 4\)"):
        DeltaXYWHBoxCoder().decode(torch.zeros(3, 4), torch.zeros(2, 4))


def test_from_config_and_registry():
    cfg = get_cfg()
    cfg.MODEL.BOX_CODER.WEIGHTS = [10.0, 10.0, 5.0, 5.0]
    cfg.MODEL.BOX_CODER.SCALE_CLAMP = 3.0
    coder = build(BOX_CODER_REGISTRY, "DeltaXYWHBoxCoder", cfg)
    assert isinstance(coder, DeltaXYWHBoxCoder)
    assert coder.weights == (10.0, 10.0, 5.0, 5.0) and coder.scale_clamp == 3.0

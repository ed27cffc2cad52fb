"""Tests of the box losses: smooth L1 / L1 on encoded targets and GIoU on decoded boxes."""
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss

from retinadet.config import get_cfg
from retinadet.modeling import build
from retinadet.modeling.box_coders import DeltaXYWHBoxCoder
from retinadet.modeling.losses import GIoULoss, L1Loss, SmoothL1Loss, giou_loss, smooth_l1_loss
from retinadet.registry import BOX_LOSS_REGISTRY


def _problem(seed: int, n: int = 200):
    """Random anchors, gt boxes near them and predicted deltas; all xyxy pixels."""
    generator = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=generator) * 400
    wh = torch.rand(n, 2, generator=generator) * 200 + 8
    anchors = torch.cat([xy, xy + wh], dim=1)
    gt = anchors + torch.randn(n, 4, generator=generator) * 10
    gt[:, 2:] = torch.max(gt[:, 2:], gt[:, :2] + 1.0)
    deltas = torch.randn(n, 4, generator=generator) * 0.3
    return deltas, gt, anchors


@pytest.mark.parametrize("beta", [0.0, 0.1, 1.0 / 9, 1.0])
def test_smooth_l1_matches_torch(beta):
    deltas, gt, anchors = _problem(0)
    coder = DeltaXYWHBoxCoder((10.0, 10.0, 5.0, 5.0))
    loss = SmoothL1Loss(beta)(deltas, gt, anchors, coder)
    expected = F.smooth_l1_loss(deltas, coder.encode(gt, anchors), beta=beta, reduction="sum")
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    assert loss.dim() == 0


def test_smooth_l1_hand_computed():
    # beta = 0.5: |d| = 0.2 < beta -> 0.5 * 0.04 / 0.5 = 0.04; |d| = 2 -> 2 - 0.25 = 1.75;
    # d = 0.5 exactly -> linear branch 0.5 - 0.25 = 0.25 (= quadratic 0.5 * 0.25 / 0.5, continuous).
    pred = torch.tensor([0.2, -2.0, 0.5])
    assert smooth_l1_loss(pred, torch.zeros(3), 0.5).tolist() == pytest.approx([0.04, 1.75, 0.25])
    # beta below 1e-5 is plain L1 (no division by ~0).
    assert smooth_l1_loss(pred, torch.zeros(3), 1e-6).tolist() == pytest.approx([0.2, 2.0, 0.5])


def test_l1_matches_torch():
    deltas, gt, anchors = _problem(1)
    coder = DeltaXYWHBoxCoder()
    loss = L1Loss()(deltas, gt, anchors, coder)
    expected = F.l1_loss(deltas, coder.encode(gt, anchors), reduction="sum")
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)


def test_giou_matches_torchvision_on_decoded_boxes():
    deltas, gt, anchors = _problem(2)
    coder = DeltaXYWHBoxCoder()
    deltas.requires_grad_(True)
    loss = GIoULoss()(deltas, gt, anchors, coder)
    expected = generalized_box_iou_loss(coder.decode(deltas, anchors), gt, reduction="sum")
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    elementwise = giou_loss(coder.decode(deltas, anchors), gt)
    torch.testing.assert_close(
        elementwise, generalized_box_iou_loss(coder.decode(deltas, anchors), gt), rtol=1e-5, atol=1e-6
    )
    loss.backward()
    assert torch.isfinite(deltas.grad).all() and deltas.grad.abs().sum() > 0


def test_giou_hand_computed():
    # (0,0,2,2) vs (1,1,3,3): inter 1, union 7, enclosing 9 -> GIoU = 1/7 - 2/9, loss = 1.0793651.
    # (0,0,1,1) vs (2,0,3,1): no overlap, union 2, enclosing 3 -> GIoU = -1/3, loss = 1.3333333.
    b1 = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    b2 = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 3.0, 1.0]], dtype=torch.float64)
    assert giou_loss(b1, b2).tolist() == pytest.approx([1 - (1 / 7 - 2 / 9), 4 / 3], rel=1e-6)


def test_identical_boxes_give_zero():
    _, gt, anchors = _problem(3)
    coder = DeltaXYWHBoxCoder((10.0, 10.0, 5.0, 5.0))
    perfect = coder.encode(gt, anchors)
    for loss_fn in (SmoothL1Loss(0.1), SmoothL1Loss(0.0), L1Loss()):
        assert loss_fn(perfect, gt, anchors, coder).item() == pytest.approx(0.0, abs=1e-4)
    # GIoU: decode(encode(gt)) == gt up to float32 rounding, so 1 - GIoU is ~0 for 200 boxes.
    assert GIoULoss()(perfect, gt, anchors, coder).item() == pytest.approx(0.0, abs=1e-3)
    assert giou_loss(gt, gt).abs().max().item() < 1e-6


def test_giou_zero_area_is_finite():
    coder = DeltaXYWHBoxCoder()
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]])
    gt = torch.tensor([[5.0, 5.0, 5.0, 15.0], [0.0, 0.0, 0.0, 0.0]])  # zero width; a point
    deltas = torch.zeros(2, 4, requires_grad=True)
    loss = GIoULoss()(deltas, gt, anchors, coder)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(deltas.grad).all()
    # Zero-width gt (5,5)-(5,15) vs box (0,0,10,10): inter 0, union 100, enclosing 10 x 15 = 150
    #   -> GIoU = 0 - 50/150 = -1/3, loss 4/3.
    # Point vs point: every area 0, eps keeps 0/eps = 0 -> GIoU 0, loss 1.
    assert giou_loss(coder.decode(deltas.detach(), anchors), gt).tolist() == pytest.approx(
        [4.0 / 3.0, 1.0], rel=1e-6
    )


def test_box_loss_from_config_and_registry():
    cfg = get_cfg()
    cfg.MODEL.BOX_LOSS.BETA = 0.25
    smooth = build(BOX_LOSS_REGISTRY, "SmoothL1Loss", cfg, loss_cfg=cfg.MODEL.BOX_LOSS)
    assert isinstance(smooth, SmoothL1Loss) and smooth.beta == 0.25
    assert isinstance(build(BOX_LOSS_REGISTRY, "L1Loss", cfg, loss_cfg=cfg.MODEL.BOX_LOSS), L1Loss)
    assert isinstance(build(BOX_LOSS_REGISTRY, "GIoULoss", cfg, loss_cfg=cfg.MODEL.BOX_LOSS), GIoULoss)
    with pytest.raises(ValueError, match="beta = -1"):
        SmoothL1Loss(-1.0)

"""Tests of the focal loss, FL* and alpha-balanced CE: worked numbers, gradients, reference parity."""
import math

import pytest
import torch
import torch.nn.functional as F
from fvcore.nn import sigmoid_focal_loss_star as fvcore_focal_loss_star
from torchvision.ops import sigmoid_focal_loss as tv_sigmoid_focal_loss

from retinadet.config import get_cfg
from retinadet.modeling import build
from retinadet.modeling.losses import (
    AlphaBalancedCrossEntropy,
    SigmoidFocalLoss,
    SigmoidFocalLossStar,
    sigmoid_focal_loss,
    sigmoid_focal_loss_star,
)
from retinadet.registry import CLS_LOSS_REGISTRY


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.mark.parametrize(
    "p, label, expected",
    [
        # Foreground predicted 0.9: p_t = 0.9, FL = 0.25 * (1 - 0.9)^2 * -log(0.9)
        #   = 0.25 * 0.01 * 0.1053605 = 0.000263401.
        (0.9, 1.0, 0.25 * 0.01 * 0.1053605),
        # Background predicted 0.1: p_t = 0.9, FL = 0.75 * 0.01 * 0.1053605 = 0.000790204.
        (0.1, 0.0, 0.75 * 0.01 * 0.1053605),
        # Foreground predicted 0.1: p_t = 0.1, FL = 0.25 * 0.81 * -log(0.1)
        #   = 0.25 * 0.81 * 2.3025851 = 0.466273.
        (0.1, 1.0, 0.25 * 0.81 * 2.3025851),
        # Background predicted 0.9: p_t = 0.1, FL = 0.75 * 0.81 * 2.3025851 = 1.398820.
        (0.9, 0.0, 0.75 * 0.81 * 2.3025851),
    ],
)
def test_worked_numbers(p, label, expected):
    logits = torch.tensor([_logit(p)], dtype=torch.float64)
    targets = torch.tensor([label], dtype=torch.float64)
    loss = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert SigmoidFocalLoss(0.25, 2.0)(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_worked_numbers_rounded():
    # The rounded figures: 0.00026, 0.00079, 0.4663, 1.3988.
    logits = torch.tensor([_logit(0.9), _logit(0.1), _logit(0.1), _logit(0.9)])
    targets = torch.tensor([1.0, 0.0, 1.0, 0.0])
    loss = sigmoid_focal_loss(logits, targets)
    assert loss.tolist() == pytest.approx([0.00026, 0.00079, 0.4663, 1.3988], abs=1e-3)
    assert loss[0].item() == pytest.approx(0.00026, abs=5e-6)
    assert loss[1].item() == pytest.approx(0.00079, abs=5e-6)


def _closed_form_grad(x: torch.Tensor, y: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    # Paper, appendix B: dFL/dx = alpha_t * y * (1 - p_t)^gamma * (gamma * p_t * log(p_t) + p_t - 1),
    # y in {-1, +1}, p_t = sigmoid(y * x).
    p_t = torch.sigmoid(y * x)
    alpha_t = torch.where(y > 0, torch.full_like(x, alpha), torch.full_like(x, 1 - alpha))
    return alpha_t * y * (1 - p_t) ** gamma * (gamma * p_t * F.logsigmoid(y * x) + p_t - 1)


def _truncated_grad(x: torch.Tensor, y: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    # The same expression without the gamma * p_t * log(p_t) term (a wrong derivative).
    p_t = torch.sigmoid(y * x)
    alpha_t = torch.where(y > 0, torch.full_like(x, alpha), torch.full_like(x, 1 - alpha))
    return alpha_t * y * (1 - p_t) ** gamma * (p_t - 1)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("label", [0.0, 1.0])
def test_gradient_matches_paper_closed_form(gamma, label):
    x = torch.linspace(-8, 8, 161, dtype=torch.float64, requires_grad=True)
    targets = torch.full_like(x, label)
    sigmoid_focal_loss(x, targets, alpha=0.25, gamma=gamma, reduction="sum").backward()
    y = torch.full_like(x, 2 * label - 1)
    expected = _closed_form_grad(x.detach(), y, 0.25, gamma)
    torch.testing.assert_close(x.grad, expected, rtol=1e-9, atol=1e-12)
    truncated = _truncated_grad(x.detach(), y, 0.25, gamma)
    if gamma == 0:
        # Without focusing the dropped term is 0 * p_t * log(p_t): both forms agree.
        torch.testing.assert_close(x.grad, truncated, rtol=1e-9, atol=1e-12)
    else:
        assert (x.grad - truncated).abs().max() > 1e-2


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.5, 0.5), (-1.0, 1.5), (0.75, 0.0)])
def test_matches_torchvision(reduction, alpha, gamma):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 10, generator=generator) * 4
    targets = (torch.rand(64, 10, generator=generator) < 0.2).float()
    ours = sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)
    theirs = tv_sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("alpha, gamma", [(0.25, 4.0), (-1.0, 2.0), (0.5, 1.0)])
def test_star_matches_fvcore(reduction, alpha, gamma):
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 10, generator=generator) * 4
    targets = (torch.rand(64, 10, generator=generator) < 0.2).float()
    ours = sigmoid_focal_loss_star(logits, targets, alpha, gamma, beta=0.0, reduction=reduction)
    theirs = fvcore_focal_loss_star(logits, targets, alpha, gamma, reduction)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_star_beta_hand_computed():
    # x = 1, t = 1, gamma = 4, beta = 1: p* = sigmoid(5), FL* = -log(sigmoid(5)) / 4
    #   = log(1 + e^-5) / 4 = 0.0067153 / 4 = 0.00167883; alpha_t = 0.25 -> 0.000419708.
    # Background (t = 0), x = 1: x_t = -1, p* = sigmoid(-3), FL* = log(1 + e^3) / 4
    #   = 3.0485874 / 4 = 0.76214685; alpha_t = 0.75 -> 0.57161014.
    loss = sigmoid_focal_loss_star(
        torch.tensor([1.0, 1.0], dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64),
        alpha=0.25, gamma=4.0, beta=1.0,
    )
    assert loss.tolist() == pytest.approx([0.25 * math.log1p(math.exp(-5)) / 4, 0.57161014], rel=1e-6)
    module = SigmoidFocalLossStar(gamma=4.0, beta=1.0, alpha=0.25)
    assert module(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0]])).item() == pytest.approx(
        loss.sum().item(), rel=1e-6
    )


@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("magnitude", [100.0, 1000.0])
def test_extreme_logits_finite(gamma, magnitude):
    logits = torch.tensor([magnitude, -magnitude, magnitude, -magnitude], requires_grad=True)
    targets = torch.tensor([1.0, 1.0, 0.0, 0.0])
    loss = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=gamma)
    assert torch.isfinite(loss).all()
    # Easy examples (1st, 4th) cost ~0; hard ones cost alpha_t * |x| (since -log p_t = |x|).
    assert loss.tolist() == pytest.approx([0.0, 0.25 * magnitude, 0.75 * magnitude, 0.0], abs=1e-6)
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()
    # Hard examples: gradient -> alpha_t * y * (0 + 0 - 1) = -alpha_t * y.
    assert logits.grad.tolist() == pytest.approx([0.0, -0.25, 0.75, 0.0], abs=1e-6)
    # The naive (1 - p_t) ** gamma with gamma < 1 differentiates 0 ** gamma and gives NaN/inf here.
    if gamma < 1:
        naive = logits.detach().clone().requires_grad_(True)
        tv_sigmoid_focal_loss(naive, targets, 0.25, gamma, "sum").backward()
        assert not torch.isfinite(naive.grad).all()


def test_star_extreme_logits_finite():
    logits = torch.tensor([1000.0, -1000.0, 1000.0, -1000.0], requires_grad=True)
    targets = torch.tensor([1.0, 1.0, 0.0, 0.0])
    loss = sigmoid_focal_loss_star(logits, targets, alpha=0.25, gamma=4.0)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_alpha_balanced_ce():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(32, 5, generator=generator) * 3
    targets = (torch.rand(32, 5, generator=generator) < 0.3).float()
    ce = AlphaBalancedCrossEntropy(alpha=0.25)(logits, targets)
    tv = tv_sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=0.0, reduction="sum")
    torch.testing.assert_close(ce, tv, rtol=1e-5, atol=1e-6)
    alpha_t = 0.25 * targets + 0.75 * (1 - targets)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(ce, (alpha_t * bce).sum(), rtol=1e-5, atol=1e-6)
    # alpha < 0: plain BCE.
    plain = AlphaBalancedCrossEntropy(alpha=-1)(logits, targets)
    torch.testing.assert_close(plain, bce.sum(), rtol=1e-5, atol=1e-6)


def test_module_sums_and_half_inputs():
    logits = torch.tensor([[_logit(0.9), _logit(0.1)]], dtype=torch.float16)
    targets = torch.tensor([[1.0, 1.0]], dtype=torch.float16)
    loss = SigmoidFocalLoss()(logits, targets)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    # 0.000263401 + 0.466273 (fp16 logits round to about 1e-3 relative).
    assert loss.item() == pytest.approx(0.000263401 + 0.466273, rel=2e-3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: SigmoidFocalLoss(alpha=1.5), "alpha = 1.5"),
        (lambda: SigmoidFocalLoss(gamma=-1.0), "gamma = -1.0"),
        (lambda: SigmoidFocalLossStar(gamma=0.0), "gamma = 0.0"),
        (lambda: sigmoid_focal_loss(torch.zeros(2), torch.zeros(2), reduction="avg"), "avg"),
        (lambda: sigmoid_focal_loss(torch.zeros(2), torch.zeros(3)), "same shape"),
    ],
)
def test_invalid_arguments(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


def test_from_config_and_registry():
    cfg = get_cfg()
    cfg.MODEL.CLS_LOSS.ALPHA = 0.5
    cfg.MODEL.CLS_LOSS.GAMMA = 3.0
    cfg.MODEL.CLS_LOSS.BETA = 1.0
    fl = build(CLS_LOSS_REGISTRY, "SigmoidFocalLoss", cfg, loss_cfg=cfg.MODEL.CLS_LOSS)
    assert isinstance(fl, SigmoidFocalLoss) and (fl.alpha, fl.gamma) == (0.5, 3.0)
    star = build(CLS_LOSS_REGISTRY, "SigmoidFocalLossStar", cfg, loss_cfg=cfg.MODEL.CLS_LOSS)
    assert (star.alpha, star.gamma, star.beta) == (0.5, 3.0, 1.0)
    ce = build(CLS_LOSS_REGISTRY, "AlphaBalancedCrossEntropy", cfg, loss_cfg=cfg.MODEL.CLS_LOSS)
    assert (ce.alpha, ce.gamma) == (0.5, 0.0)

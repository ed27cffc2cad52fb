"""Tests of the optimizer parameter groups and build_optimizer."""
import pytest
import torch
from torch import nn

from retinadet.config import get_cfg
from retinadet.solver import build_optimizer, get_default_optimizer_params
from retinadet.utils.testing import solver_config


class _Net(nn.Module):
    """Every kind of parameter the grouping tells apart, plus a frozen layer and a shared weight."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.gn = nn.GroupNorm(2, 4)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.weight.requires_grad_(False)
        self.frozen.bias.requires_grad_(False)
        self.tied = nn.Linear(4, 2, bias=False)
        self.tied.weight = self.fc.weight  # the same tensor in two modules


def _ids(params):
    return [id(p) for p in params]


def test_groups_norm_bias_default_and_frozen():
    net = _Net()
    groups = get_default_optimizer_params(
        net, base_lr=0.1, weight_decay=1e-4, weight_decay_norm=0.0, weight_decay_bias=2e-4, bias_lr_factor=2.0
    )
    assert len(groups) == 3
    default, norm, bias = groups  # the fixed order: default, norm, bias

    assert _ids(default["params"]) == _ids([net.conv.weight, net.fc.weight])
    assert default["lr"] == 0.1 and default["weight_decay"] == 1e-4

    assert set(_ids(norm["params"])) == set(_ids([net.gn.weight, net.gn.bias, net.bn.weight, net.bn.bias]))
    assert len(norm["params"]) == 4
    assert norm["lr"] == 0.1 and norm["weight_decay"] == 0.0

    assert _ids(bias["params"]) == _ids([net.conv.bias, net.fc.bias])
    assert bias["lr"] == pytest.approx(0.2)  # 0.1 x BIAS_LR_FACTOR 2
    assert bias["weight_decay"] == 2e-4

    all_ids = [i for g in groups for i in _ids(g["params"])]
    assert len(all_ids) == len(set(all_ids))  # the shared fc / tied weight appears once
    frozen = set(_ids([net.frozen.weight, net.frozen.bias]))
    assert not frozen & set(all_ids)
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert set(all_ids) == trainable


def test_empty_groups_are_left_out():
    groups = get_default_optimizer_params(nn.Linear(2, 2, bias=False), 0.1, 1e-4, 0.0, 1e-4)
    assert len(groups) == 1
    assert groups[0]["weight_decay"] == 1e-4


_cfg = solver_config


def test_build_optimizer_values():
    net = _Net()
    cfg = _cfg(BASE_LR=0.02, MOMENTUM=0.8, NESTEROV=True, WEIGHT_DECAY=3e-4, WEIGHT_DECAY_NORM=1e-5,
               WEIGHT_DECAY_BIAS=0.0, BIAS_LR_FACTOR=3.0)
    opt = build_optimizer(cfg, net)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["lr"] == 0.02
    assert opt.defaults["momentum"] == 0.8
    assert opt.defaults["nesterov"] is True
    lrs = [g["lr"] for g in opt.param_groups]
    decays = [g["weight_decay"] for g in opt.param_groups]
    assert lrs == pytest.approx([0.02, 0.02, 0.06])  # default, norm, bias (0.02 x 3)
    assert decays == [3e-4, 1e-5, 0.0]
    assert all(g["momentum"] == 0.8 and g["nesterov"] for g in opt.param_groups)


def test_build_optimizer_one_momentum_step_by_hand():
    lin = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    opt = build_optimizer(_cfg(BASE_LR=0.5, MOMENTUM=0.9, NESTEROV=False, WEIGHT_DECAY=0.0), lin)
    for _ in range(2):
        opt.zero_grad()
        (3.0 * lin.weight).sum().backward()  # gradient 3 both times
        opt.step()
    # buffer 3 then 0.9 * 3 + 3 = 5.7; weight 1 - 0.5 * 3 - 0.5 * 5.7 = -3.35
    assert lin.weight.item() == pytest.approx(-3.35)


def test_build_optimizer_errors():
    with pytest.raises(ValueError, match="SOLVER.BASE_LR must be positive; got 0.0"):
        build_optimizer(_cfg(BASE_LR=0.0), nn.Linear(2, 2))
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(_cfg(), frozen)


def test_adamw_one_step_by_hand():
    # AdamW's first step: m = (1 - b1) g, v = (1 - b2) g^2, bias-corrected m_hat / sqrt(v_hat) = sign(g),
    # so w <- w * (1 - lr * wd) - lr * g / (|g| + eps / sqrt(1 - b2)) ~ w (1 - lr wd) - lr sign(g).
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER = "AdamW"
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.WEIGHT_DECAY = 0.5
    cfg.SOLVER.BETAS = (0.8, 0.9)
    net = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, -2.0]]))
    optimizer = build_optimizer(cfg, net)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["betas"] == (0.8, 0.9)
    net(torch.tensor([[3.0, -1.0]])).sum().backward()  # gradient (3, -1)
    optimizer.step()
    expected = torch.tensor([[1.0 * (1 - 0.05) - 0.1, -2.0 * (1 - 0.05) + 0.1]])
    assert torch.allclose(net.weight.detach(), expected, atol=1e-6)


def test_unknown_optimizer_and_bad_betas_are_named():
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER = "adamw"
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER 'adamw'.*SGD, AdamW.*closest: 'AdamW'"):
        build_optimizer(cfg, nn.Linear(2, 1))
    cfg.SOLVER.OPTIMIZER = "AdamW"
    cfg.SOLVER.BETAS = (0.9, 1.5)
    with pytest.raises(ValueError, match="SOLVER.BETAS.*\\[0.9, 1.5\\]"):
        build_optimizer(cfg, nn.Linear(2, 1))
    cfg.SOLVER.BETAS = (0.9, 0.999)
    cfg.SOLVER.WEIGHT_DECAY = -0.1
    with pytest.raises(ValueError, match="SOLVER.WEIGHT_DECAY must be >= 0; got -0.1"):
        build_optimizer(cfg, nn.Linear(2, 1))

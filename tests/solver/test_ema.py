"""ModelEMA: the average by hand, the decay ramp, swapping the weights in and out, and its config checks."""
import math

import pytest
import torch
from torch import nn

from retinadet.config import get_cfg
from retinadet.solver import ModelEMA, build_model_ema


def _net(value: float) -> nn.Module:
    net = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)
    return net


def test_average_by_hand_without_ramp():
    net = _net(0.0)
    ema = ModelEMA(net, decay=0.5, ramp_iters=0)
    with torch.no_grad():
        net[0].weight.fill_(4.0)
    ema.update(net)  # 0.5 * 0 + 0.5 * 4 = 2
    with torch.no_grad():
        net[0].weight.fill_(8.0)
    ema.update(net)  # 0.5 * 2 + 0.5 * 8 = 5
    assert torch.equal(ema.weights["0.weight"], torch.full((1, 2), 5.0))
    assert torch.equal(ema.weights["0.bias"], torch.zeros(1))
    # Integer buffers (BatchNorm's batch counter) are copied, not averaged.
    net[1].num_batches_tracked.fill_(7)
    ema.update(net)
    assert int(ema.weights["1.num_batches_tracked"]) == 7 and ema.updates == 3


def test_decay_ramps_up_from_zero():
    ema = ModelEMA(_net(0.0), decay=0.999, ramp_iters=100)
    assert ema.current_decay() == pytest.approx(0.999 * (1 - math.exp(-1 / 100)))
    ema.updates = 1000
    assert ema.current_decay() == pytest.approx(0.999 * (1 - math.exp(-1001 / 100)))  # ~0.999
    # The first update with a tiny decay nearly copies the weights.
    net = _net(0.0)
    ema = ModelEMA(net, decay=0.9, ramp_iters=1000)
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    ema.update(net)
    d = 0.9 * (1 - math.exp(-1 / 1000))
    assert ema.weights["0.weight"][0, 0].item() == pytest.approx(1 - d)


def test_applied_to_swaps_the_average_in_and_back():
    net = _net(1.0)
    ema = ModelEMA(net, decay=0.5, ramp_iters=0)
    with torch.no_grad():
        net[0].weight.fill_(3.0)
    ema.update(net)  # average 2
    with ema.applied_to(net) as model:
        assert model is net and torch.equal(net[0].weight, torch.full((1, 2), 2.0))
    assert torch.equal(net[0].weight, torch.full((1, 2), 3.0))
    with pytest.raises(RuntimeError):
        with ema.applied_to(net):
            raise RuntimeError("evaluation failed")
    assert torch.equal(net[0].weight, torch.full((1, 2), 3.0))  # restored after an error too


def test_state_dict_round_trip_and_mismatch():
    net = _net(1.0)
    ema = ModelEMA(net, decay=0.5, ramp_iters=0)
    with torch.no_grad():
        net[0].weight.fill_(3.0)
    ema.update(net)
    other = ModelEMA(_net(0.0), decay=0.5, ramp_iters=0)
    assert not other.restored
    other.load_state_dict(ema.state_dict())
    assert other.restored and all(torch.equal(other.weights[k], ema.weights[k]) for k in ema.weights)
    with pytest.raises(KeyError, match="missing"):
        other.load_state_dict({"0.weight": torch.zeros(1, 2)})


def test_build_model_ema_reads_and_checks_the_config():
    cfg = get_cfg()
    assert build_model_ema(cfg, _net(0.0)) is None  # MODEL_EMA.ENABLED is False by default
    cfg.MODEL_EMA.ENABLED = True
    cfg.MODEL_EMA.DECAY = 0.99
    cfg.MODEL_EMA.RAMP_ITERS = 10
    ema = build_model_ema(cfg, _net(0.0))
    assert (ema.decay, ema.ramp_iters) == (0.99, 10)
    cfg.MODEL_EMA.DECAY = -0.5
    with pytest.raises(ValueError, match="MODEL_EMA.DECAY must be in \\[0, 1\\).*-0.5"):
        build_model_ema(cfg, _net(0.0))
    cfg.MODEL_EMA.DECAY = 0.99
    cfg.MODEL_EMA.RAMP_ITERS = -1
    with pytest.raises(ValueError, match="MODEL_EMA.RAMP_ITERS must be >= 0"):
        build_model_ema(cfg, _net(0.0))

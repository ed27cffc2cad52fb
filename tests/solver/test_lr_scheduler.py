"""Tests of the warmup LR schedules and build_lr_scheduler against hand-computed values."""
import math
from typing import List

import pytest
import torch
from torch import nn

from retinadet.solver import WarmupCosineLR, WarmupMultiStepLR, build_lr_scheduler, warmup_factor_at_iter
from retinadet.utils.testing import solver_config


def _optimizer(lr: float = 0.1) -> torch.optim.SGD:
    return torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=lr)


def _lrs(optimizer: torch.optim.Optimizer, scheduler, iterations: int) -> List[float]:
    """The LR of the first param group at iterations 0 .. iterations - 1, stepping like the trainer."""
    lrs = []
    for _ in range(iterations):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # keeps torch from warning that the scheduler stepped before the optimizer
        scheduler.step()
    return lrs


def test_warmup_factor_at_iter_linear_and_constant():
    # linear: 0.001 * (1 - i/4) + i/4
    assert warmup_factor_at_iter("linear", 0, 4, 0.001) == pytest.approx(0.001)
    assert warmup_factor_at_iter("linear", 2, 4, 0.001) == pytest.approx(0.5005)
    assert warmup_factor_at_iter("linear", 4, 4, 0.001) == 1.0
    assert warmup_factor_at_iter("constant", 3, 4, 0.25) == 0.25
    assert warmup_factor_at_iter("constant", 4, 4, 0.25) == 1.0
    assert warmup_factor_at_iter("linear", 0, 0, 0.001) == 1.0  # no warmup at all
    with pytest.raises(ValueError, match="Unknown warmup method 'cubic'"):
        warmup_factor_at_iter("cubic", 0, 4, 0.1)


def test_multistep_linear_warmup_and_milestones():
    opt = _optimizer(0.1)
    sched = WarmupMultiStepLR(opt, milestones=[6, 8], gamma=0.1, warmup_factor=0.001, warmup_iters=4)
    lrs = _lrs(opt, sched, 10)
    expected = [
        0.1 * 0.001,  # iteration 0: the warmup factor itself
        0.1 * 0.25075,  # 0.001 * 0.75 + 0.25
        0.1 * 0.5005,  # halfway: 0.001 * 0.5 + 0.5
        0.1 * 0.75025,  # 0.001 * 0.25 + 0.75
        0.1, 0.1,  # warmup over, before the first milestone
        0.01, 0.01,  # from milestone 6: x 0.1
        0.001, 0.001,  # from milestone 8: x 0.01
    ]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_multistep_constant_warmup():
    opt = _optimizer(0.1)
    sched = WarmupMultiStepLR(opt, milestones=[5], gamma=0.5, warmup_factor=0.25, warmup_iters=3,
                              warmup_method="constant")
    # 0.1 * 0.25 = 0.025 for iterations 0-2, then 0.1, then 0.1 * 0.5 from iteration 5
    assert _lrs(opt, sched, 7) == pytest.approx([0.025, 0.025, 0.025, 0.1, 0.1, 0.05, 0.05], rel=1e-12)


def test_multistep_scales_every_param_group():
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD([{"params": [model.weight], "lr": 0.1}, {"params": [model.bias], "lr": 0.2}], lr=0.1)
    sched = WarmupMultiStepLR(opt, milestones=[1], gamma=0.1, warmup_iters=0)
    opt.step()
    sched.step()
    # iteration 1: each group's own base LR x 0.1
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.02])


def test_multistep_rejects_decreasing_milestones_and_bad_warmup():
    with pytest.raises(ValueError, match=r"SOLVER.STEPS must be increasing; got \[8, 6\]"):
        WarmupMultiStepLR(_optimizer(), milestones=[8, 6])
    with pytest.raises(ValueError, match="0 < SOLVER.WARMUP_FACTOR <= 1"):
        WarmupMultiStepLR(_optimizer(), milestones=[6], warmup_factor=0.0)
    with pytest.raises(ValueError, match="SOLVER.WARMUP_ITERS >= 0"):
        WarmupMultiStepLR(_optimizer(), milestones=[6], warmup_iters=-1)


def test_cosine_without_warmup_start_middle_end():
    opt = _optimizer(0.1)
    sched = WarmupCosineLR(opt, max_iter=10, end_factor=0.1, warmup_iters=0)
    lrs = _lrs(opt, sched, 13)
    # 0.1 * (0.1 + 0.9 * (1 + cos(pi * i / 10)) / 2)
    assert lrs[0] == pytest.approx(0.1)  # cos(0) = 1
    assert lrs[5] == pytest.approx(0.055)  # cos(pi / 2) = 0: 0.1 * (0.1 + 0.45)
    assert lrs[10] == pytest.approx(0.01)  # cos(pi) = -1: the end value
    assert lrs[12] == pytest.approx(0.01)  # held past max_iter
    assert all(a > b for a, b in zip(lrs[:10], lrs[1:11]))  # strictly decreasing until the end


def test_cosine_with_linear_warmup():
    opt = _optimizer(0.1)
    sched = WarmupCosineLR(opt, max_iter=10, end_factor=0.0, warmup_factor=0.001, warmup_iters=4)
    lrs = _lrs(opt, sched, 5)
    assert lrs[0] == pytest.approx(0.1 * 0.001)  # cosine factor 1 at iteration 0
    # iteration 2: warmup 0.5005 x cosine (1 + cos(0.2 pi)) / 2 = 0.5005 x 0.9045085 = 0.04527066...
    assert lrs[2] == pytest.approx(0.1 * 0.5005 * (1 + math.cos(0.2 * math.pi)) / 2, rel=1e-12)
    assert lrs[2] == pytest.approx(0.0452707, rel=1e-5)
    # iteration 4: warmup over, (1 + cos(0.4 pi)) / 2 = 0.6545085
    assert lrs[4] == pytest.approx(0.06545085, rel=1e-6)


def test_cosine_rejects_non_positive_max_iter():
    with pytest.raises(ValueError, match="MAX_ITER > 0; got 0"):
        WarmupCosineLR(_optimizer(), max_iter=0)


@pytest.mark.parametrize("name", ["WarmupMultiStepLR", "WarmupCosineLR"])
def test_resume_from_state_dict_matches_uninterrupted(name: str):
    def make():
        opt = _optimizer(0.1)
        if name == "WarmupMultiStepLR":
            sched = WarmupMultiStepLR(opt, milestones=[6, 9], gamma=0.1, warmup_factor=0.01, warmup_iters=4)
        else:
            sched = WarmupCosineLR(opt, max_iter=12, end_factor=0.05, warmup_factor=0.01, warmup_iters=4)
        return opt, sched

    opt_ref, sched_ref = make()
    reference = _lrs(opt_ref, sched_ref, 14)

    opt_a, sched_a = make()
    _lrs(opt_a, sched_a, 3)  # interrupted inside the warmup, after iterations 0-2
    opt_state, sched_state = opt_a.state_dict(), sched_a.state_dict()

    # A fresh scheduler that only gets the schedule's state: right from its next step on.
    opt_b, sched_b = make()
    sched_b.load_state_dict(sched_state)
    assert sched_b.last_epoch == 3
    resumed = []
    for _ in range(3, 14):
        opt_b.step()
        sched_b.step()
        resumed.append(opt_b.param_groups[0]["lr"])
    assert resumed == pytest.approx(reference[4:] + [sched_ref.get_last_lr()[0]], rel=1e-12)

    # As the trainer resumes (optimizer and schedule): right at the resumed iteration already.
    opt_c, sched_c = make()
    sched_c.load_state_dict(sched_state)
    opt_c.load_state_dict(opt_state)
    assert _lrs(opt_c, sched_c, 11) == pytest.approx(reference[3:], rel=1e-12)


_cfg = solver_config


def test_build_lr_scheduler_reads_solver_keys():
    opt = _optimizer(0.1)
    cfg = _cfg(LR_SCHEDULER_NAME="WarmupMultiStepLR", STEPS=(2, 4), GAMMA=0.5, WARMUP_ITERS=0, MAX_ITER=6)
    sched = build_lr_scheduler(cfg, opt)
    assert isinstance(sched, WarmupMultiStepLR)
    assert _lrs(opt, sched, 6) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])

    opt = _optimizer(0.1)
    cfg = _cfg(LR_SCHEDULER_NAME="WarmupCosineLR", BASE_LR=0.1, BASE_LR_END=0.02, WARMUP_ITERS=0, MAX_ITER=4)
    sched = build_lr_scheduler(cfg, opt)
    assert isinstance(sched, WarmupCosineLR)
    # end factor 0.02 / 0.1 = 0.2; iteration 2: 0.1 * (0.2 + 0.8 * 0.5) = 0.06; iteration 4: 0.02
    assert _lrs(opt, sched, 5) == pytest.approx(
        [0.1, 0.1 * (0.2 + 0.4 * (1 + math.cos(math.pi / 4))), 0.06, 0.1 * (0.2 + 0.4 * (1 - math.cos(math.pi / 4))), 0.02]
    )


@pytest.mark.parametrize("name, closest", [("WarmupCosine", "WarmupCosineLR"), ("MultiStepLR", "WarmupMultiStepLR")])
def test_build_lr_scheduler_unknown_name_names_closest(name: str, closest: str):
    with pytest.raises(ValueError) as info:
        build_lr_scheduler(_cfg(LR_SCHEDULER_NAME=name), _optimizer())
    message = str(info.value)
    assert f"Unknown SOLVER.LR_SCHEDULER_NAME '{name}'" in message
    assert f"(closest: '{closest}')" in message
    assert "WarmupMultiStepLR, WarmupCosineLR" in message

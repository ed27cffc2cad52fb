"""retinadet.benchmark.steps: the training and inference steps a benchmark times."""
import math

import pytest
import torch

from retinadet.benchmark.inputs import synthetic_batches
from retinadet.benchmark.steps import build_step, eval_step, train_step, zero_lr_optimizer
from retinadet.engine import DefaultTrainer
from tests.benchmark.benchmark_checks import QUICK, frozen_config


def test_train_step_does_the_work_but_keeps_the_weights():
    # The optimizer runs at LR 0: backward reaches every trainable parameter and SGD keeps momentum
    # buffers for them, but the weights stay the initial ones, so a random model cannot diverge.
    cfg = frozen_config(QUICK)
    torch.manual_seed(0)
    model = DefaultTrainer.build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items() if "normalizer" not in k}
    optimizer = zero_lr_optimizer(cfg, model)
    assert {g["lr"] for g in optimizer.param_groups} == {0.0} and optimizer.defaults["momentum"] == 0.9
    batch = synthetic_batches(cfg, 1, 2, (64, 96))[0]
    model.train()
    for _ in range(2):
        losses = train_step(model, optimizer, batch)
    assert set(losses) == {"loss_cls", "loss_box_reg"} and all(math.isfinite(v) for v in losses.values())
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None and "momentum_buffer" in optimizer.state[p] for p in trainable)
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


class _Losses(torch.nn.Module):
    """A model whose training output is ``terms`` times its one weight (w = 1)."""

    def __init__(self, terms):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.terms = terms

    def forward(self, *inputs):
        return {name: self.w * value for name, value in self.terms.items()}


def test_train_step_sums_the_loss_terms():
    # Ours: only the loss_* terms count (d/dw of 2w + 3w = 5); the metric is not backpropagated.
    model = _Losses({"loss_a": 2.0, "loss_b": 3.0, "accuracy": 100.0})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert train_step(model, optimizer, "batch") == {"loss_a": 2.0, "loss_b": 3.0}
    assert model.w.grad.item() == 5.0 and model.w.item() == pytest.approx(1.0 - 0.1 * 5.0)
    # torchvision's own detectors name their terms without the prefix: all are summed.
    model = _Losses({"classification": 2.0, "bbox_regression": 4.0})
    train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), "images", "targets")
    assert model.w.grad.item() == 6.0
    with pytest.raises(ValueError, match="_Losses returned no loss terms"):
        train_step(_Losses({}), optimizer)


def test_eval_step_counts_detections_per_image():
    def detector(batch):
        return [{"boxes": torch.zeros(n, 4)} for n in (3, 0, 6)]

    assert eval_step(detector, [{}, {}, {}]) == {"detections_per_image": 3.0}


def test_build_step_sets_the_mode():
    cfg = frozen_config(QUICK)
    model = _Losses({"loss_a": 1.0})
    build_step(model, cfg, "eval")
    assert not model.training
    step = build_step(model, cfg, "train")
    assert model.training and step(None) == {"loss_a": 1.0}
    with pytest.raises(ValueError, match="train or eval task; got 'flops'"):
        build_step(model, cfg, "flops")

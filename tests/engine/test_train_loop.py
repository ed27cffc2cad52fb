"""Tests of TrainerBase (hook order, errors, stopping) and SimpleTrainer (one SGD step by hand)."""
import io
import itertools
import math
from typing import Any, Dict, Iterator, List, Optional

import pytest
import torch
from torch import nn

from retinadet.engine.train_loop import HookBase, SimpleTrainer, TrainerBase


class _Recorder(HookBase):
    """Appends "<point> <name>" to a shared list at every hook point."""

    def __init__(self, name: str, events: List[str]) -> None:
        self.name = name
        self.events = events

    def before_train(self) -> None:
        self.events.append(f"before_train {self.name}")

    def before_step(self) -> None:
        self.events.append(f"before_step {self.name}")

    def after_backward(self) -> None:
        self.events.append(f"after_backward {self.name}")

    def after_step(self) -> None:
        self.events.append(f"after_step {self.name}")

    def after_train(self) -> None:
        self.events.append(f"after_train {self.name}")


class _LoopTrainer(TrainerBase):
    """A step that only records itself (and runs the after_backward hooks); raises at ``fail_at``."""

    def __init__(self, events: List[str], fail_at: Optional[int] = None) -> None:
        super().__init__()
        self.events = events
        self.fail_at = fail_at

    def run_step(self) -> None:
        if self.iter == self.fail_at:
            raise RuntimeError(f"step {self.iter} failed")
        self.events.append(f"step {self.iter}")
        self.after_backward()


def test_hooks_run_in_list_order_at_every_point():
    events: List[str] = []
    trainer = _LoopTrainer(events)
    trainer.register_hooks([_Recorder("a", events), None, _Recorder("b", events)])
    assert len(trainer.hooks) == 2  # None is skipped
    trainer.train(0, 3)
    expected = ["before_train a", "before_train b"]
    for i in range(3):
        expected += ["before_step a", "before_step b", f"step {i}", "after_backward a", "after_backward b",
                     "after_step a", "after_step b"]
    expected += ["after_train a", "after_train b"]
    assert events == expected
    assert trainer.iter == 3 and trainer.completed == 3 and trainer.exception is None


def test_register_rejects_non_hooks():
    with pytest.raises(TypeError, match="is not a HookBase"):
        _LoopTrainer([]).register_hooks([object()])


def test_after_train_runs_when_a_step_raises():
    events: List[str] = []
    trainer = _LoopTrainer(events, fail_at=1)
    trainer.register_hooks([_Recorder("a", events), _Recorder("b", events)])
    with pytest.raises(RuntimeError, match="step 1 failed"):
        trainer.train(0, 3)
    assert events[-4:] == ["before_step a", "before_step b", "after_train a", "after_train b"]
    assert "after_step a" in events[:-4] and events.count("after_step a") == 1  # only iteration 0 finished
    assert isinstance(trainer.exception, RuntimeError)
    assert trainer.completed == 1 and trainer.iter == 1


def test_completed_seen_by_after_step():
    class Seen(HookBase):
        def __init__(self) -> None:
            self.completed: List[int] = []
            self.iters: List[int] = []

        def after_step(self) -> None:
            self.completed.append(self.trainer.completed)
            self.iters.append(self.trainer.iter)

    hook = Seen()
    trainer = _LoopTrainer([])
    trainer.register_hooks([hook])
    trainer.train(2, 5)
    assert hook.completed == [3, 4, 5]  # iter + 1: the iterations whose step finished
    assert hook.iters == [2, 3, 4]
    assert trainer.start_iter == 2 and trainer.storage.iter == 5


def test_request_stop_ends_after_the_current_step():
    events: List[str] = []

    class StopInStep1(HookBase):
        def before_step(self) -> None:
            if self.trainer.iter == 1:
                self.trainer.request_stop()

    trainer = _LoopTrainer(events)
    trainer.register_hooks([StopInStep1(), _Recorder("a", events)])
    trainer.train(0, 10)
    assert [e for e in events if e.startswith("step")] == ["step 0", "step 1"]
    assert events.count("after_step a") == 2  # step 1 still completes with its after_step
    assert events[-1] == "after_train a"
    assert trainer.completed == 2 and trainer.iter == 2 and trainer.stop_requested
    assert trainer.exception is None


class _ToyModel(nn.Module):
    """w = (0.5, -1.0); out = w . x; loss_a = out ** 2, loss_b = 0.5 * sum(w), acc = 100 * sum(w)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[0.5, -1.0]]))
        self.out_dtypes: List[torch.dtype] = []

    def forward(self, batch: List[Dict[str, Any]]) -> Dict[str, torch.Tensor]:
        x = torch.stack([d["x"] for d in batch])
        out = self.linear(x).sum()
        self.out_dtypes.append(out.dtype)
        w = self.linear.weight.sum()
        # acc has a gradient too: summing it into the loss would change the step.
        return {"loss_a": out.float() ** 2, "loss_b": 0.5 * w, "acc": 100.0 * w}


def _batches() -> Iterator[List[Dict[str, Any]]]:
    return itertools.repeat([{"x": torch.tensor([1.0, 2.0]), "image_id": 7}])


def test_one_sgd_step_by_hand():
    model = _ToyModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleTrainer(model, _batches(), opt)
    trainer.train(0, 1)
    # out = 0.5 - 2 = -1.5; d(loss_a)/dw = 2 * out * x = (-3, -6); d(loss_b)/dw = (0.5, 0.5)
    # gradient (-2.5, -5.5); w - 0.1 * gradient = (0.75, -0.45). With acc summed it would be (-9.75, -10.45).
    assert model.linear.weight.grad[0].tolist() == pytest.approx([-2.5, -5.5])
    assert model.linear.weight.detach()[0].tolist() == pytest.approx([0.75, -0.45])
    assert sorted(trainer.loss_dict) == ["loss_a", "loss_b"]
    assert trainer.batch[0]["image_id"] == 7
    latest = trainer.storage.latest()
    assert latest["total_loss"][0] == pytest.approx(2.0)  # 2.25 + 0.5 * (-0.5); acc not in it
    assert latest["loss_a"][0] == pytest.approx(2.25)
    assert latest["acc"][0] == pytest.approx(-50.0)  # recorded, just not summed
    assert latest["data_time"][0] >= 0.0


def test_gradient_clipping_by_norm():
    model = _ToyModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleTrainer(model, _batches(), opt, clip_gradients={"type": "norm", "value": 1.0, "norm_type": 2.0})
    trainer.train(0, 1)
    norm = math.sqrt(2.5**2 + 5.5**2)  # sqrt(36.5) = 6.0415
    clipped = [-2.5 / norm, -5.5 / norm]  # (-0.4138, -0.9104), unit norm
    grad = model.linear.weight.grad
    assert grad[0].tolist() == pytest.approx(clipped, rel=1e-5)
    assert grad.norm().item() == pytest.approx(1.0, rel=1e-5)
    assert model.linear.weight.detach()[0].tolist() == pytest.approx(
        [0.5 - 0.1 * clipped[0], -1.0 - 0.1 * clipped[1]], rel=1e-5)
    assert trainer.storage.latest()["grad_norm"][0] == pytest.approx(norm, rel=1e-5)  # the norm before clipping


def test_gradient_clipping_by_value():
    model = _ToyModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleTrainer(model, _batches(), opt, clip_gradients={"type": "value", "value": 1.0, "norm_type": 2.0})
    trainer.train(0, 1)
    # (-2.5, -5.5) clamped to [-1, 1] element-wise; w = (0.5 + 0.1, -1.0 + 0.1)
    assert model.linear.weight.grad.tolist() == [[-1.0, -1.0]]
    assert model.linear.weight.detach()[0].tolist() == pytest.approx([0.6, -0.9])


def test_unknown_clip_type_is_rejected():
    model = _ToyModel()
    with pytest.raises(ValueError, match="Gradient clipping type 'max'"):
        SimpleTrainer(model, _batches(), torch.optim.SGD(model.parameters(), lr=0.1),
                      clip_gradients={"type": "max", "value": 1.0})


def test_amp_on_cpu_uses_bfloat16():
    model = _ToyModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    trainer = SimpleTrainer(model, _batches(), opt, amp=True)
    assert trainer.grad_scaler is None  # bfloat16 needs no loss scaling
    trainer.train(0, 2)
    assert model.out_dtypes == [torch.bfloat16, torch.bfloat16]
    assert model.linear.weight.dtype == torch.float32
    assert torch.isfinite(model.linear.weight).all()
    # two steps of about 0.01 * (-2.5, -5.5) each moved the weights up
    w = model.linear.weight.detach()[0]
    assert w[0].item() > 0.5 and w[1].item() > -1.0


def test_model_without_loss_terms_is_a_clear_error():
    class NoLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, batch):
            return {"cls": self.w.sum(), "acc": self.w.sum()}

    model = NoLoss()
    trainer = SimpleTrainer(model, _batches(), torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"no 'loss_\*' terms; its keys: \['acc', 'cls'\]"):
        trainer.train(0, 1)


def test_model_returning_a_tensor_is_a_clear_error():
    class TensorOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def forward(self, batch):
            return self.lin(batch[0]["x"])  # a tensor, not a dict

    model = TensorOut()
    trainer = SimpleTrainer(model, _batches(), torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(TypeError, match="must return a dict of losses; it returned Tensor"):
        trainer.train(0, 1)


class _PositionLoader:
    """An endless loader with a resumable position; batch k has x = (1, k)."""

    def __init__(self) -> None:
        self.position = 0

    def __iter__(self):
        while True:
            batch = [{"x": torch.tensor([1.0, float(self.position)]), "image_id": self.position}]
            self.position += 1
            yield batch

    def state_dict(self) -> Dict[str, int]:
        return {"position": self.position}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.position = state["position"]


class _CountingHook(HookBase):
    def __init__(self) -> None:
        self.count = 0

    def after_step(self) -> None:
        self.count += 1

    def state_dict(self) -> Dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.count = state["count"]


def _trainer_with_state():
    model = _ToyModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trainer = SimpleTrainer(model, _PositionLoader(), opt)
    hook = _CountingHook()
    trainer.register_hooks([hook])
    return trainer, model, hook


def test_state_dict_round_trip_resumes_exactly():
    first, model_a, _ = _trainer_with_state()
    first.train(0, 3)
    # Through bytes, as in a checkpoint file: loading the live dict would make both optimizers share
    # one momentum buffer.
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state["iteration"] == 3
    assert state["data_loader"] == {"position": 3}
    assert state["hooks"] == {"_CountingHook": {"count": 3}}
    assert "momentum_buffer" in state["optimizer"]["state"][0]
    assert "grad_scaler" not in state  # no AMP on the CPU scaler

    second, model_b, hook_b = _trainer_with_state()
    model_b.load_state_dict(model_a.state_dict())  # the checkpointer's part
    second.load_state_dict(state)
    assert second.iter == 3 and second.completed == 3
    assert second.data_loader.position == 3
    assert hook_b.count == 3
    assert torch.equal(second.optimizer.state_dict()["state"][0]["momentum_buffer"],
                       first.optimizer.state_dict()["state"][0]["momentum_buffer"])

    first.train(3, 5)
    second.train(3, 5)
    assert second.batch[0]["image_id"] == 4  # batches 3 and 4 after the resume
    assert torch.equal(model_a.linear.weight, model_b.linear.weight)
    assert hook_b.count == 5

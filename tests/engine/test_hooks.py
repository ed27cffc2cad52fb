"""Tests of the training hooks: non-finite guard, checkpointing, evaluation, LR, registered hooks."""
import os
from typing import Any, Dict, Iterator, List, Optional

import pytest
import torch
from torch import nn

from retinadet.config import get_cfg
from retinadet.engine import hooks
from retinadet.engine.train_loop import HookBase, SimpleTrainer, TrainerBase
from retinadet.registry import HOOK_REGISTRY
from retinadet.solver import WarmupMultiStepLR


class _NoopTrainer(TrainerBase):
    """Steps that do nothing except record a loss; raises at iteration ``fail_at``."""

    def __init__(self, fail_at: Optional[int] = None) -> None:
        super().__init__()
        self.fail_at = fail_at

    def run_step(self) -> None:
        if self.iter == self.fail_at:
            raise RuntimeError(f"step {self.iter} failed")
        self.storage.put_scalar("loss", 1.0)


class _StopAt(HookBase):
    """Requests a stop once ``completed`` reaches ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def after_step(self) -> None:
        if self.trainer.completed == self.at:
            self.trainer.request_stop()


# ---------------------------------------------------------------- NonFiniteLossGuard


class _PoisonModel(nn.Module):
    """loss_a = sum(w * x) ** 2 stays finite; loss_b turns NaN on a batch marked "poison"."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.5, -0.25]))

    def forward(self, batch: List[Dict[str, Any]]) -> Dict[str, torch.Tensor]:
        x = torch.stack([d["x"] for d in batch]).sum(0)
        loss_b = self.w.sum() * (float("nan") if batch[0].get("poison") else 1.0)
        return {"loss_a": (self.w * x).sum() ** 2, "loss_b": loss_b}


def _poison_batches() -> Iterator[List[Dict[str, Any]]]:
    for i in range(3):
        yield [{"x": torch.tensor([1.0, 1.0]), "image_id": 10 + i, "poison": False}]
    yield [{"x": torch.tensor([1.0, 1.0]), "image_id": 42, "poison": True},
           {"x": torch.tensor([2.0, 0.0]), "image_id": 43, "poison": True}]


class _Snapshot(HookBase):
    def __init__(self) -> None:
        self.weights: Optional[torch.Tensor] = None

    def after_step(self) -> None:
        self.weights = self.trainer.model.w.detach().clone()


def test_non_finite_loss_guard_names_term_iteration_and_images():
    model = _PoisonModel()
    trainer = SimpleTrainer(model, _poison_batches(), torch.optim.SGD(model.parameters(), lr=0.1))
    snapshot = _Snapshot()
    trainer.register_hooks([hooks.NonFiniteLossGuard(), snapshot])
    with pytest.raises(FloatingPointError) as info:
        trainer.train(0, 10)
    message = str(info.value)
    assert "at iteration 3:" in message
    assert "loss_b = nan" in message
    assert "loss_a" not in message  # only the non-finite term is named
    assert "Batch image ids: [42, 43]" in message
    # The weights after the last good step (iteration 2) were not stepped with the NaN gradient.
    assert torch.isnan(model.w.grad).all()
    assert torch.equal(model.w.detach(), snapshot.weights)
    assert trainer.completed == 3


def test_non_finite_loss_guard_passes_finite_losses():
    model = _PoisonModel()
    batches = iter([[{"x": torch.tensor([1.0, 1.0]), "image_id": 1}]] * 2)
    trainer = SimpleTrainer(model, batches, torch.optim.SGD(model.parameters(), lr=0.1))
    trainer.register_hooks([hooks.NonFiniteLossGuard()])
    trainer.train(0, 2)
    assert trainer.completed == 2


# ---------------------------------------------------------------- PeriodicCheckpointer


class _FakeCheckpointer:
    """Records save names; with ``write`` also creates ``<name>.pth`` in ``save_dir``."""

    def __init__(self, save_dir: str, write: bool = False, save_to_disk: bool = True) -> None:
        self.save_dir = save_dir
        self.save_to_disk = save_to_disk
        self.write = write
        self.saved: List[str] = []
        self.extras: List[Dict[str, Any]] = []

    def save(self, name: str, **extra: Any) -> None:
        self.saved.append(name)
        self.extras.append(extra)
        if self.write:
            with open(os.path.join(self.save_dir, f"{name}.pth"), "wb") as f:
                f.write(b"x")


def _checkpoint_run(tmp_path, period: int, max_iter: int, fail_at: Optional[int] = None,
                    stop_at: Optional[int] = None, **kwargs: Any) -> _FakeCheckpointer:
    ckpt = _FakeCheckpointer(str(tmp_path), write=kwargs.pop("write", False))
    trainer = _NoopTrainer(fail_at=fail_at)
    extra_hooks = [_StopAt(stop_at)] if stop_at is not None else []
    trainer.register_hooks(extra_hooks + [hooks.PeriodicCheckpointer(ckpt, period, **kwargs)])
    trainer.train(0, max_iter)
    return ckpt


def test_checkpointer_saves_at_the_period_and_final(tmp_path):
    ckpt = _checkpoint_run(tmp_path, period=2, max_iter=5, extra={"meta": {"thing_classes": ["a"]}})
    # completed 2 and 4 are periodic; 5 = max_iter gets the final one
    assert ckpt.saved == ["model_0000002", "model_0000004", "model_final"]
    assert ckpt.extras == [{"meta": {"thing_classes": ["a"]}}] * 3
    # With max_iter a multiple of the period the last periodic save is the final one only.
    ckpt = _checkpoint_run(tmp_path, period=2, max_iter=6)
    assert ckpt.saved == ["model_0000002", "model_0000004", "model_final"]


def test_checkpointer_saves_nothing_after_an_error(tmp_path):
    ckpt = _FakeCheckpointer(str(tmp_path))
    trainer = _NoopTrainer(fail_at=3)
    trainer.register_hooks([hooks.PeriodicCheckpointer(ckpt, 2)])
    with pytest.raises(RuntimeError, match="step 3 failed"):
        trainer.train(0, 10)
    assert ckpt.saved == ["model_0000002"]  # no model_0000003, no model_final


def test_checkpointer_saves_when_stop_was_requested(tmp_path):
    ckpt = _checkpoint_run(tmp_path, period=2, max_iter=10, stop_at=3)
    assert ckpt.saved == ["model_0000002", "model_0000003"]


def test_checkpointer_saves_nothing_when_stopped_before_the_first_step(tmp_path):
    ckpt = _FakeCheckpointer(str(tmp_path))
    trainer = _NoopTrainer()
    trainer.register_hooks([hooks.PeriodicCheckpointer(ckpt, 2)])
    trainer.request_stop()
    trainer.train(0, 10)
    assert ckpt.saved == []


def test_checkpointer_max_to_keep_deletes_the_oldest(tmp_path):
    with open(tmp_path / "model_best.pth", "wb") as f:
        f.write(b"x")  # not a periodic name: never deleted
    _checkpoint_run(tmp_path, period=1, max_iter=6, max_to_keep=2, write=True)
    # periodic saves after 1..5 iterations, the newest two kept; 6 is the final
    assert sorted(os.listdir(tmp_path)) == ["model_0000004.pth", "model_0000005.pth", "model_best.pth",
                                            "model_final.pth"]


def test_checkpointer_max_to_keep_zero_keeps_all(tmp_path):
    _checkpoint_run(tmp_path, period=2, max_iter=7, max_to_keep=0, write=True)
    assert sorted(os.listdir(tmp_path)) == ["model_0000002.pth", "model_0000004.pth", "model_0000006.pth",
                                            "model_final.pth"]


def test_checkpointer_does_not_delete_when_not_saving_to_disk(tmp_path):
    for i in (1, 2, 3):
        (tmp_path / f"model_{i:07d}.pth").write_bytes(b"x")
    ckpt = _FakeCheckpointer(str(tmp_path), save_to_disk=False)
    trainer = _NoopTrainer()
    trainer.register_hooks([hooks.PeriodicCheckpointer(ckpt, 1, max_to_keep=1)])
    trainer.train(0, 3)
    assert len(os.listdir(tmp_path)) == 3


def test_checkpointer_rejects_non_positive_period():
    with pytest.raises(ValueError, match="SOLVER.CHECKPOINT_PERIOD must be positive; got 0"):
        hooks.PeriodicCheckpointer(_FakeCheckpointer("."), 0)


# ---------------------------------------------------------------- EvalHook


class _Evaluator:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> Dict[str, Any]:
        self.calls += 1
        return {"bbox": {"AP": 10.0 + self.calls, "AP50": 20.0 + self.calls}, "note": "text is dropped"}


def test_eval_hook_runs_every_period_and_after_the_last_iteration():
    evaluate = _Evaluator()
    trainer = _NoopTrainer()
    trainer.register_hooks([hooks.EvalHook(2, evaluate)])
    trainer.train(0, 5)
    assert evaluate.calls == 3  # after 2, after 4, at the end (5)
    # Stored at the last completed iteration: completed 2 -> iteration 1, 4 -> 3, 5 -> 4.
    assert trainer.storage.history("bbox/AP").values() == [(11.0, 1), (12.0, 3), (13.0, 4)]
    assert trainer.storage.latest()["bbox/AP50"] == (23.0, 4)
    assert trainer.storage.smoothing_hints()["bbox/AP"] is False
    assert "note" not in trainer.storage.latest()


def test_eval_hook_does_not_evaluate_twice_at_the_end():
    evaluate = _Evaluator()
    trainer = _NoopTrainer()
    hook = hooks.EvalHook(2, evaluate)
    trainer.register_hooks([hook])
    trainer.train(0, 4)
    assert evaluate.calls == 2  # after 2, then only the final one at 4
    assert hook.last_results["bbox"]["AP"] == 12.0


def test_eval_hook_period_zero_and_errors():
    evaluate = _Evaluator()
    trainer = _NoopTrainer()
    trainer.register_hooks([hooks.EvalHook(0, evaluate)])
    trainer.train(0, 4)
    assert evaluate.calls == 1  # only at the end

    evaluate = _Evaluator()
    trainer = _NoopTrainer(fail_at=3)
    trainer.register_hooks([hooks.EvalHook(2, evaluate)])
    with pytest.raises(RuntimeError):
        trainer.train(0, 6)
    assert evaluate.calls == 1  # after 2 only; nothing after the error


def test_flatten_results():
    results = {"bbox": {"AP": 50, "AP-per-class": {"circle": 1.5}, "ok": True, "name": "x"}, "time": 3}
    assert hooks.flatten_results(results) == {"bbox/AP": 50.0, "bbox/AP-per-class/circle": 1.5, "time": 3.0}
    assert hooks.flatten_results({"AP": 1}, prefix="val") == {"val/AP": 1.0}
    assert hooks.flatten_results({}) == {}


# ---------------------------------------------------------------- LRScheduler hook


def test_lr_scheduler_hook_puts_lr_and_steps():
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = WarmupMultiStepLR(opt, milestones=[2, 3], gamma=0.1, warmup_iters=0)

    class StepTrainer(_NoopTrainer):
        def run_step(self) -> None:
            opt.step()  # the optimizer steps before the scheduler, as in SimpleTrainer

    trainer = StepTrainer()
    hook = hooks.LRScheduler(opt, sched)
    trainer.register_hooks([hook])
    trainer.train(0, 4)
    # 0.1 at iterations 0 and 1, x 0.1 from 2, x 0.01 from 3
    lrs = trainer.storage.history("lr").values()
    assert [it for _, it in lrs] == [0, 1, 2, 3]
    assert [v for v, _ in lrs] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    assert trainer.storage.smoothing_hints()["lr"] is False
    assert sched.last_epoch == 4
    assert hook.state_dict()["last_epoch"] == 4


# ---------------------------------------------------------------- registered user hooks


class UserCountingHook(HookBase):
    """A user hook without from_config."""

    def __init__(self) -> None:
        self.steps = 0

    def after_step(self) -> None:
        self.steps += 1


class UserConfiguredHook(HookBase):
    """A user hook whose arguments come from the config and the trainer."""

    def __init__(self, period: int, trainer_class: str) -> None:
        self.period = period
        self.trainer_class = trainer_class
        self.calls = 0

    @classmethod
    def from_config(cls, cfg: Any, trainer: Any) -> Dict[str, Any]:
        return {"period": cfg.TRAIN.LOG_PERIOD, "trainer_class": type(trainer).__name__}

    def after_step(self) -> None:
        if self.trainer.completed % self.period == 0:
            self.calls += 1


@pytest.fixture
def registered_user_hooks():
    HOOK_REGISTRY.register(UserCountingHook)
    HOOK_REGISTRY.register(UserConfiguredHook)
    yield
    # The registry is global; leave it as other tests expect it.
    for name in ("UserCountingHook", "UserConfiguredHook"):
        HOOK_REGISTRY._obj_map.pop(name, None)


def test_build_registered_hooks_with_and_without_from_config(registered_user_hooks):
    cfg = get_cfg()
    cfg.TRAIN.LOG_PERIOD = 2
    trainer = _NoopTrainer()
    built = hooks.build_registered_hooks(["UserConfiguredHook", "UserCountingHook"], cfg, trainer)
    assert [type(h) for h in built] == [UserConfiguredHook, UserCountingHook]
    configured, counting = built
    assert configured.period == 2 and configured.trainer_class == "_NoopTrainer"
    trainer.register_hooks(built)
    trainer.train(0, 5)
    assert counting.steps == 5
    assert configured.calls == 2  # completed 2 and 4


def test_build_registered_hooks_unknown_name(registered_user_hooks):
    with pytest.raises(KeyError, match="Did you mean 'UserCountingHook'"):
        hooks.build_registered_hooks(["UserCountingHok"], get_cfg(), _NoopTrainer())


# ---------------------------------------------------------------- PeriodicWriter
class _RecordingWriter:
    """Records the storage iteration of each write."""

    def __init__(self) -> None:
        self.lines: List[int] = []
        self.closed = False

    def begin(self, start_iter: int) -> None:
        pass

    def write(self) -> None:
        from retinadet.utils.events import get_event_storage

        self.lines.append(get_event_storage().iter)

    def close(self) -> None:
        self.closed = True


def _writer_run(max_iter: int, period: int, fail_at: Optional[int] = None, stop_at: Optional[int] = None):
    writer = _RecordingWriter()
    trainer = _NoopTrainer(fail_at=fail_at)
    trainer.register_hooks(([_StopAt(stop_at)] if stop_at is not None else []) + [hooks.PeriodicWriter([writer], period)])
    if fail_at is None:
        trainer.train(0, max_iter)
    else:
        with pytest.raises(RuntimeError, match=f"step {fail_at} failed"):
            trainer.train(0, max_iter)
    return writer


def test_writer_lines_are_labelled_with_finished_steps_only():
    # Storage iterations are 0-based: a line at storage.iter 3 reports 4 finished steps.
    done = _writer_run(max_iter=6, period=2)
    assert done.lines == [1, 3, 5, 6] and done.closed  # the last write is for the final evaluation's scalars
    # Stopped after 3 steps (Ctrl-C): one line for step 3, not one for the step that never ran.
    assert _writer_run(max_iter=10, period=2, stop_at=3).lines == [1, 2]
    # Stopped right after a written step: nothing is repeated.
    assert _writer_run(max_iter=10, period=2, stop_at=4).lines == [1, 3]
    # Step 5 failed (a NaN loss): 5 steps finished, the last line reports the 5th, not the failed 6th.
    failed = _writer_run(max_iter=10, period=2, fail_at=5)
    assert failed.lines == [1, 3, 4] and failed.closed

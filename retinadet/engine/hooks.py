"""Training hooks, one job each: timing, LR schedule, non-finite loss guard, Ctrl-C, checkpoints,
evaluation, metric writers, the loss-curve picture and detection pictures."""
import logging
import os
import signal
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.distributed as dist

from retinadet.utils import comm
from retinadet.utils.events import get_event_storage
from retinadet.utils.writers import EventWriter

from .train_loop import HookBase

__all__ = [
    "EMAHook",
    "EvalHook",
    "GracefulInterrupt",
    "IterationTimer",
    "LRScheduler",
    "LossCurvePlotter",
    "NonFiniteLossGuard",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "flatten_results",
]

logger = logging.getLogger("retinadet.engine")


def _any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is True on any process (every process must call this at the same point)."""
    if comm.get_world_size() == 1:
        return flag
    backend_device = device if dist.get_backend() == dist.Backend.NCCL else torch.device("cpu")
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=backend_device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


class IterationTimer(HookBase):
    """Puts the seconds of each step (data loading, forward, backward, optimizer) as ``time``; logs the
    total at the end. Put it first, so other hooks' ``after_step`` work is not counted."""

    def __init__(self) -> None:
        self._step_start = 0.0
        self._train_start = 0.0

    def before_train(self) -> None:
        self._train_start = time.perf_counter()

    def before_step(self) -> None:
        self._step_start = time.perf_counter()

    def after_step(self) -> None:
        get_event_storage().put_scalar("time", time.perf_counter() - self._step_start)

    def after_train(self) -> None:
        done = self.trainer.completed - self.trainer.start_iter
        total = time.perf_counter() - self._train_start
        if done > 0:
            logger.info("Overall training time: %.1f s for %d iterations (%.4f s / it, hooks included).",
                        total, done, total / done)


class LRScheduler(HookBase):
    """Steps ``scheduler`` after every iteration and puts the LR of the first param group as ``lr``.
    Its state (the schedule's position) goes into checkpoints."""

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler

    def after_step(self) -> None:
        get_event_storage().put_scalar("lr", self.optimizer.param_groups[0]["lr"], smoothing_hint=False)
        self.scheduler.step()

    def state_dict(self) -> Dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


class EMAHook(HookBase):
    """After every step folds the model's weights into ``ema`` (a ModelEMA). Put it before the
    checkpointer and the evaluation, so both see the average of the step just taken. The average
    itself goes into checkpoints through the checkpointer (``model_ema``); its update count is the
    trainer's iteration, so a resumed run continues the same decay ramp."""

    def __init__(self, ema, model: torch.nn.Module) -> None:
        self.ema = ema
        self.model = model

    def before_train(self) -> None:
        if not self.ema.restored:
            # Nothing was resumed into the average: start it from the weights training starts from
            # (MODEL.WEIGHTS or a checkpoint of a run without EMA), not from the random init.
            self.ema.reset(self.model)
        self.ema.updates = self.trainer.start_iter

    def after_step(self) -> None:
        self.ema.update(self.model)


class NonFiniteLossGuard(HookBase):
    """After the backward pass and before the optimizer step: a NaN or infinite ``loss_*`` term
    stops training with FloatingPointError naming the term, the iteration and the batch's image ids.
    The weights are not stepped and no checkpoint is written, so the last good one stays intact.
    In distributed runs every process learns that one of them failed and stops too."""

    def after_backward(self) -> None:
        bad = {k: float(v.detach()) for k, v in self.trainer.loss_dict.items() if not torch.isfinite(v.detach()).all()}
        if not _any_rank(bool(bad), self.trainer.device):
            return
        batch = self.trainer.batch or []
        image_ids = [d.get("image_id", d.get("file_name", "?")) for d in batch]
        if bad:
            terms = ", ".join(f"{k} = {v}" for k, v in bad.items())
            where = f" on rank {comm.get_rank()}" if comm.get_world_size() > 1 else ""
            raise FloatingPointError(
                f"Loss became non-finite at iteration {self.trainer.iter}{where}: {terms}. Batch image ids: "
                f"{image_ids}. Training stopped before the optimizer step; the last checkpoint in OUTPUT_DIR is "
                "intact. Lower SOLVER.BASE_LR, lengthen SOLVER.WARMUP_ITERS or enable SOLVER.CLIP_GRADIENTS."
            )
        raise FloatingPointError(
            f"Loss became non-finite at iteration {self.trainer.iter} on another process (its log names the "
            "term and the images); stopping this one too."
        )


class GracefulInterrupt(HookBase):
    """Ctrl-C (SIGINT) asks the trainer to stop after the running step, so the checkpointer writes a
    checkpoint at a step boundary that ``--resume`` continues exactly. A second Ctrl-C interrupts at
    once. In distributed runs the processes agree after each step, so they stop together."""

    def __init__(self) -> None:
        self._previous: Any = None
        self._installed = False
        self._signalled = False

    def _handle(self, signum, frame) -> None:
        if self._signalled:
            raise KeyboardInterrupt
        self._signalled = True
        logger.warning("Interrupted: stopping after this iteration and saving a checkpoint (Ctrl-C again to abort).")

    def before_train(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True

    def after_step(self) -> None:
        if _any_rank(self._signalled, self.trainer.device):
            self.trainer.interrupted = True
            self.trainer.request_stop()

    def after_train(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


class PeriodicCheckpointer(HookBase):
    """Saves ``model_XXXXXXX.pth`` (X = iterations done) every ``period`` iterations, keeping the newest
    ``max_to_keep`` (0 = all); ``model_final.pth`` when training completes; and a checkpoint when it
    was stopped on request (Ctrl-C). Nothing is written after an error, so the last good checkpoint
    stays the one ``--resume`` uses.

    Args:
        checkpointer: a DetectionCheckpointer (``save_to_disk`` False on ranks > 0).
        period: iterations between checkpoints (> 0).
        max_to_keep: periodic checkpoints kept.
        extra: data stored in every checkpoint (e.g. ``{"meta": {"thing_classes": [...]}}``).
    """

    def __init__(self, checkpointer, period: int, max_to_keep: int = 3, extra: Optional[Dict[str, Any]] = None) -> None:
        if period <= 0:
            raise ValueError(f"SOLVER.CHECKPOINT_PERIOD must be positive; got {period}.")
        self.checkpointer = checkpointer
        self.period = int(period)
        self.max_to_keep = int(max_to_keep)
        self.extra = dict(extra or {})

    def _save(self, name: str) -> None:
        self.checkpointer.save(name, **self.extra)
        comm.synchronize()

    def after_step(self) -> None:
        done = self.trainer.completed
        if done % self.period == 0 and done < self.trainer.max_iter:
            self._save(f"model_{done:07d}")
            self._delete_old()

    def _delete_old(self) -> None:
        if self.max_to_keep <= 0 or not self.checkpointer.save_to_disk:
            return
        from retinadet.checkpoint.checkpointer import periodic_checkpoint_files

        for old in periodic_checkpoint_files(self.checkpointer.save_dir)[: -self.max_to_keep]:
            os.remove(old)

    def after_train(self) -> None:
        trainer = self.trainer
        if trainer.exception is not None:
            return
        if trainer.completed >= trainer.max_iter:
            self._save("model_final")
        elif trainer.stop_requested and trainer.completed > trainer.start_iter and trainer.completed % self.period:
            # (A stop at a multiple of the period was saved by after_step already.)
            self._save(f"model_{trainer.completed:07d}")
            self._delete_old()


def flatten_results(results: Dict[str, Any], prefix: str = "") -> Dict[str, float]:
    """{"bbox": {"AP": 50.1}} -> {"bbox/AP": 50.1}; nested dicts joined with "/", non-numbers dropped."""
    flat: Dict[str, float] = {}
    for key, value in results.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten_results(value, name))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


class EvalHook(HookBase):
    """Runs ``eval_function()`` every ``period`` iterations (0 = never during training) and after the
    last one; its ``{task: {metric: value}}`` results go to the storage flattened (``bbox/AP``, ...),
    so the writers put them into metrics.json next to the losses. Runs on every process (inference
    is distributed); the results come from the main one."""

    def __init__(self, period: int, eval_function: Callable[[], Dict[str, Any]]) -> None:
        self.period = int(period)
        self.eval_function = eval_function
        self.last_results: Dict[str, Any] = {}

    def _evaluate(self) -> None:
        results = self.eval_function() or {}
        self.last_results = results
        flat = flatten_results(results)
        if flat:
            # Recorded at the last completed iteration, next to that iteration's losses.
            get_event_storage().put_scalars(smoothing_hint=False, cur_iter=self.trainer.completed - 1, **flat)
        comm.synchronize()

    def after_step(self) -> None:
        done = self.trainer.completed
        if self.period > 0 and done % self.period == 0 and done < self.trainer.max_iter:
            self._evaluate()

    def after_train(self) -> None:
        if self.trainer.exception is None and self.trainer.completed >= self.trainer.max_iter:
            self._evaluate()


class PeriodicWriter(HookBase):
    """Calls every writer's ``write()`` each ``period`` iterations and after the last one, and
    ``close()`` at the end. Put it after the hooks that put scalars (timer, LR, evaluation)."""

    def __init__(self, writers: Sequence[EventWriter], period: int = 20) -> None:
        if period <= 0:
            raise ValueError(f"TRAIN.LOG_PERIOD must be positive; got {period}.")
        self.writers = list(writers)
        self.period = int(period)

    def before_train(self) -> None:
        self._written_through = self.trainer.start_iter
        for w in self.writers:
            w.begin(self.trainer.start_iter)

    def after_step(self) -> None:
        done = self.trainer.completed
        if done % self.period == 0 or done == self.trainer.max_iter:
            for w in self.writers:
                w.write()
            self._written_through = done

    def after_train(self) -> None:
        trainer = self.trainer
        done = trainer.completed
        if done >= trainer.max_iter:
            # Completed: the final evaluation's scalars, if any, still have to be written.
            for w in self.writers:
                w.write()
        elif done > self._written_through:
            # Stopped early (Ctrl-C, an error) with steps not yet reported: one last line, labelled with
            # the last step that finished (not the one that would have come next, or the one that failed).
            trainer.storage.iter = done - 1
            for w in self.writers:
                w.write()
        for w in self.writers:
            w.close()


class LossCurvePlotter(HookBase):
    """At the end of training draws ``png_path`` from ``metrics_json`` (losses, and the evaluation
    APs), also after an error, so a diverged run leaves its curve behind."""

    def __init__(self, metrics_json: str, png_path: str) -> None:
        self.metrics_json = metrics_json
        self.png_path = png_path

    def after_train(self) -> None:
        from retinadet.utils.loss_curve import plot_loss_curves

        if not os.path.exists(self.metrics_json):
            return
        try:
            plot_loss_curves(self.metrics_json, self.png_path)
        except ValueError as e:
            logger.info("No loss curve drawn: %s", e)
            return
        logger.info("Loss curve written to %s", self.png_path)


def build_registered_hooks(names: Sequence[str], cfg: Any, trainer: Any) -> List[HookBase]:
    """The HOOK_REGISTRY classes named in ``names`` (TRAIN.HOOKS), each checked against the Hook
    contract and built as ``cls(**cls.from_config(cfg, trainer=trainer))`` (HookBase's gives no
    arguments)."""
    from retinadet.registry import HOOK_REGISTRY, build

    return [build(HOOK_REGISTRY, name, cfg, trainer=trainer) for name in names]

"""The training loop: HookBase, TrainerBase (runs the hooks) and SimpleTrainer (one SGD step)."""
import logging
import time
import weakref
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch
from torch import nn

from retinadet.utils.events import EventStorage, get_event_storage
from retinadet.utils.rng import get_rng_states, set_rng_states

__all__ = ["HookBase", "SimpleTrainer", "TrainerBase"]

logger = logging.getLogger("retinadet.engine")


class HookBase:
    """A piece of the training loop that runs at fixed points; ``self.trainer`` is set on registration.

    Call order for each iteration: ``before_step``, the step (``after_backward`` between the
    backward pass and the optimizer step), ``after_step``. ``before_train`` and ``after_train`` run
    once; ``after_train`` also runs when training stops with an error. Its contract, the one a hook
    named in TRAIN.HOOKS is checked against, is ``retinadet.registry.Hook``. ``state_dict()`` goes into
    checkpoints (under the hook's class name) and ``load_state_dict()`` gets it back on resume.
    """

    trainer: "TrainerBase"

    @classmethod
    def from_config(cls, cfg: Any, trainer: "TrainerBase") -> Dict[str, Any]:
        """Keyword arguments of ``__init__`` from ``cfg`` and ``trainer``: how a hook named in
        TRAIN.HOOKS is built (``cls(**cls.from_config(cfg, trainer))``). None by default."""
        return {}

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_backward(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


class TrainerBase:
    """Runs iterations ``start_iter .. max_iter - 1`` with hooks, inside an EventStorage.

    Hooks run in list order at every point. ``after_train`` runs even when a step raises (and the
    error is then re-raised). ``request_stop()`` ends the loop cleanly after the current step
    (Ctrl-C uses it so a checkpoint can be written at a step boundary).

    Attributes: ``iter`` (the iteration running; after the loop, the one that would come next),
    ``completed`` (iterations whose step finished: ``iter + 1`` inside ``after_step``), ``start_iter``,
    ``max_iter``, ``storage``, ``exception`` (what stopped training, or None), ``stop_requested``,
    ``interrupted`` (the stop came from Ctrl-C: the command then exits with 130, as shells expect).
    """

    def __init__(self) -> None:
        self._hooks: List[HookBase] = []
        self.iter = 0
        self.completed = 0
        self.start_iter = 0
        self.max_iter = 0
        self.storage: Optional[EventStorage] = None
        self.exception: Optional[BaseException] = None
        self.stop_requested = False
        self.interrupted = False

    @property
    def hooks(self) -> List[HookBase]:
        """The registered hooks, in call order."""
        return list(self._hooks)

    def register_hooks(self, hooks: Sequence[Optional[HookBase]]) -> None:
        """Append ``hooks`` (None entries are skipped); each gets a weak reference to this trainer."""
        for h in hooks:
            if h is None:
                continue
            if not isinstance(h, HookBase):
                raise TypeError(f"Hook {h!r} of type {type(h).__name__} is not a HookBase.")
            # A weak proxy: trainer and hooks would otherwise keep each other alive.
            h.trainer = weakref.proxy(self)
            self._hooks.append(h)

    def request_stop(self) -> None:
        """Stop after the step that is running (or before the first one)."""
        self.stop_requested = True

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run iterations ``start_iter`` .. ``max_iter - 1``."""
        logger.info("Starting training from iteration %d", start_iter)
        self.iter = self.start_iter = self.completed = start_iter
        self.max_iter = max_iter
        self.exception = None
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                while self.iter < max_iter and not self.stop_requested:
                    self.before_step()
                    self.run_step()
                    self.completed = self.iter + 1
                    self.after_step()
                    self.iter += 1
                    self.storage.step()
                if self.stop_requested and self.iter < max_iter:
                    logger.info("Training stopped on request after %d iterations.", self.iter)
            except BaseException as e:
                self.exception = e
                logger.exception("Exception during training at iteration %d:", self.iter)
                raise
            finally:
                self.after_train()

    def before_train(self) -> None:
        for h in self._hooks:
            h.before_train()

    def after_train(self) -> None:
        self.storage.iter = self.iter
        for h in self._hooks:
            try:
                h.after_train()
            except Exception:
                # One failing hook must not keep the others (checkpoint, writers) from finishing.
                if self.exception is None:
                    raise
                logger.exception("Hook %s failed in after_train while handling an earlier error.", type(h).__name__)

    def before_step(self) -> None:
        self.storage.iter = self.iter
        for h in self._hooks:
            h.before_step()

    def after_backward(self) -> None:
        for h in self._hooks:
            h.after_backward()

    def after_step(self) -> None:
        for h in self._hooks:
            h.after_step()

    def run_step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        """{"iteration": iterations completed (where a resumed run starts), "hooks": {hook class name: its non-empty state},
        "rng": the random generators' states}."""
        hooks = {}
        for h in self._hooks:
            state = h.state_dict()
            if state:
                name = type(h).__qualname__
                if name in hooks:
                    logger.warning("Two hooks of class %s have state; only the first is saved.", name)
                    continue
                hooks[name] = state
        return {"iteration": self.completed, "hooks": hooks, "rng": get_rng_states()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore ``iter`` and the hooks' states; states of hooks not registered now are reported."""
        self.iter = self.completed = int(state["iteration"])
        if "rng" in state:
            set_rng_states(state["rng"])
        remaining = dict(state.get("hooks", {}))
        for h in self._hooks:
            name = type(h).__qualname__
            if name in remaining:
                h.load_state_dict(remaining.pop(name))
        if remaining:
            logger.warning("Checkpoint has state of hooks that are not registered now: %s", sorted(remaining))


def _autocast_dtype(device_type: str) -> torch.dtype:
    # bfloat16 needs no loss scaling and is what CPU autocast supports well.
    return torch.float16 if device_type == "cuda" else torch.bfloat16


class SimpleTrainer(TrainerBase):
    """One step = next batch -> ``model(batch)`` (a dict of losses) -> sum of the ``loss_*`` terms ->
    backward -> ``after_backward`` hooks -> optional gradient clipping -> optimizer step.

    Args:
        model: in training mode it returns a dict of scalar tensors; the ``loss_*`` ones are summed.
        data_loader: an iterable of batches (endless, or at least ``max_iter - start_iter`` long).
        optimizer: steps the model's parameters.
        amp: autocast the forward pass (float16 with a GradScaler on CUDA, bfloat16 on the CPU).
        clip_gradients: None, or {"type": "norm"|"value", "value": float, "norm_type": float}.
        device: the model's device (for autocast); default: the device of its first parameter.

    After each step ``self.batch`` and ``self.loss_dict`` hold the step's input and losses, for hooks.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable,
        optimizer: torch.optim.Optimizer,
        amp: bool = False,
        clip_gradients: Optional[Dict[str, Any]] = None,
        device: Optional[torch.device] = None,
    ) -> None:
        super().__init__()
        model.train()
        self.model = model
        self.data_loader = data_loader
        self._data_iter = None
        self.optimizer = optimizer
        self.device = device if device is not None else next(model.parameters()).device
        self.amp = amp
        use_scaler = amp and self.device.type == "cuda"
        self.grad_scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        if clip_gradients is not None and clip_gradients.get("type") not in ("norm", "value"):
            raise ValueError(
                f"Gradient clipping type {clip_gradients.get('type')!r} (SOLVER.CLIP_GRADIENTS.CLIP_TYPE) is not "
                "valid; use 'norm' or 'value'."
            )
        self.clip_gradients = clip_gradients
        self.batch: Optional[List[Dict[str, Any]]] = None
        self.loss_dict: Dict[str, torch.Tensor] = {}

    @property
    def data_iter(self):
        """The iterator over ``data_loader``, created at first use (after a resume restored its state)."""
        if self._data_iter is None:
            self._data_iter = iter(self.data_loader)
        return self._data_iter

    def run_step(self) -> None:
        start = time.perf_counter()
        self.batch = next(self.data_iter)
        data_time = time.perf_counter() - start

        with torch.autocast(self.device.type, dtype=_autocast_dtype(self.device.type), enabled=self.amp):
            loss_dict = self.model(self.batch)
        if not isinstance(loss_dict, dict):
            raise TypeError(f"In training mode the model must return a dict of losses; it returned {type(loss_dict).__name__}.")
        self.loss_dict = {k: v for k, v in loss_dict.items() if k.startswith("loss_")}
        if not self.loss_dict:
            raise ValueError(f"The model returned no 'loss_*' terms; its keys: {sorted(loss_dict)}.")
        losses = sum(self.loss_dict.values())

        self.optimizer.zero_grad(set_to_none=True)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(losses).backward()
        else:
            losses.backward()
        self.after_backward()
        if self.grad_scaler is not None:
            self.grad_scaler.unscale_(self.optimizer)
        self._clip()
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()
        self._write_metrics(loss_dict, data_time)

    def _clip(self) -> None:
        if self.clip_gradients is None:
            return
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if self.clip_gradients["type"] == "norm":
            norm = torch.nn.utils.clip_grad_norm_(params, self.clip_gradients["value"], self.clip_gradients["norm_type"])
            get_event_storage().put_scalar("grad_norm", norm)
        else:
            torch.nn.utils.clip_grad_value_(params, self.clip_gradients["value"])

    def _write_metrics(self, loss_dict: Dict[str, torch.Tensor], data_time: float) -> None:
        storage = get_event_storage()
        values = {k: float(v.detach()) for k, v in loss_dict.items()}
        storage.put_scalar("data_time", data_time)
        storage.put_scalar("total_loss", sum(v for k, v in values.items() if k.startswith("loss_")))
        storage.put_scalars(**values)

    def state_dict(self) -> Dict[str, Any]:
        """TrainerBase's state plus the optimizer, the loss scaler and the data loader position."""
        state = super().state_dict()
        state["optimizer"] = self.optimizer.state_dict()
        if self.grad_scaler is not None:
            state["grad_scaler"] = self.grad_scaler.state_dict()
        if hasattr(self.data_loader, "state_dict"):
            state["data_loader"] = self.data_loader.state_dict()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what ``state_dict()`` saved; the data iterator restarts from the saved position."""
        super().load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.grad_scaler is not None and "grad_scaler" in state:
            self.grad_scaler.load_state_dict(state["grad_scaler"])
        if "data_loader" in state and hasattr(self.data_loader, "load_state_dict"):
            self.data_loader.load_state_dict(state["data_loader"])
            self._data_iter = None

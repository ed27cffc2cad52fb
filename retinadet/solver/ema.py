"""An exponential moving average (EMA) of a model's weights, the copy from-scratch detectors evaluate."""
import contextlib
import math
from typing import Dict, Iterator

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """Keeps ``ema = d * ema + (1 - d) * weights`` for every floating-point entry of a model's
    state dict (parameters and buffers such as BatchNorm statistics; integer counters are copied).

    The decay ramps up as ``d_n = decay * (1 - exp(-n / ramp_iters))`` after ``n`` updates (with
    ``ramp_iters`` > 0), so the average follows the fast-changing weights of early training and
    settles to ``decay`` later (the YOLOX/timm schedule).

    Args:
        model: the model whose weights are averaged (a DDP wrapper must be unwrapped first).
        decay: the final decay in [0, 1).
        ramp_iters: updates over which the decay ramps up (0 = ``decay`` from the first update).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, ramp_iters: int = 2000) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1); got {decay}.")
        if ramp_iters < 0:
            raise ValueError(f"EMA ramp_iters must be >= 0; got {ramp_iters}.")
        self.decay = float(decay)
        self.ramp_iters = int(ramp_iters)
        self.updates = 0
        self.restored = False  # set when load_state_dict() restored saved averages
        self.weights: Dict[str, torch.Tensor] = {}
        self._cache = None
        self.reset(model)

    def reset(self, model: nn.Module) -> None:
        """Start the average over from the model's current weights."""
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._cache = None  # the tensor lists of update(), rebuilt for these new averages

    def current_decay(self) -> float:
        """The decay the next update uses."""
        if self.ramp_iters <= 0:
            return self.decay
        return self.decay * (1.0 - math.exp(-(self.updates + 1) / self.ramp_iters))

    def _pairs(self, model: nn.Module):
        """(average floats, model floats, average others, model others): the tensors ``update`` works on,
        gathered once per model. The model's are its own parameters and buffers (``keep_vars``), which
        loading a state dict or an optimizer step change in place, so the lists stay valid."""
        if self._cache is None or self._cache[0] is not model:
            floats_ema, floats_new, others_ema, others_new = [], [], [], []
            for name, value in model.state_dict(keep_vars=True).items():
                ema = self.weights[name]
                if ema.is_floating_point():
                    floats_ema.append(ema)
                    floats_new.append(value)
                else:
                    others_ema.append(ema)
                    others_new.append(value)
            self._cache = (model, floats_ema, floats_new, others_ema, others_new)
        return self._cache[1:]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average."""
        d = self.current_decay()
        floats_ema, floats_new, others_ema, others_new = self._pairs(model)
        for ema, value in zip(others_ema, others_new):
            ema.copy_(value)
        if floats_ema:
            torch._foreach_lerp_(floats_ema, floats_new, 1.0 - d)
        self.updates += 1

    @contextlib.contextmanager
    def applied_to(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block ``model`` holds the averaged weights; its own are restored afterwards."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.weights)
        try:
            yield model
        finally:
            model.load_state_dict(own)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The averaged weights (a model state dict, loadable into the model itself)."""
        return {k: v.detach().clone() for k, v in self.weights.items()}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore averaged weights saved by ``state_dict()``; the update count comes from the trainer."""
        missing = sorted(set(self.weights) - set(state))
        unexpected = sorted(set(state) - set(self.weights))
        if missing or unexpected:
            raise KeyError(f"EMA weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}.")
        for name, value in state.items():
            self.weights[name].copy_(value)
        self.restored = True

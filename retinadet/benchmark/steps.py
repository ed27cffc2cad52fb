"""The steps a benchmark times: one training step (forward, summed losses, backward, optimizer step), one
inference call, and the zero-learning-rate optimizer that keeps a random model's work constant."""
from typing import Callable, Dict

import torch
from torch import nn

from retinadet.config import CfgNode
from retinadet.solver import build_optimizer

from .inputs import Batch

__all__ = ["build_step", "eval_step", "train_step", "zero_lr_optimizer"]


def zero_lr_optimizer(cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
    """The config's optimizer for ``model`` (build_optimizer) with every learning rate set to 0.

    A random model at the config's LR can diverge within a few steps (the COCO config's std-1 input
    gives a random ResNet-50 activations near 1e6) and then time NaNs. At LR 0 SGD does the same
    arithmetic (weight decay, momentum, update) but the weights, and so the work, stay the initial ones.
    """
    optimizer = build_optimizer(cfg, model)
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    return optimizer


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, *inputs) -> Dict[str, float]:
    """One SimpleTrainer step of ``model`` (in training mode) on ``inputs``: ``model(*inputs)``, the sum of
    its ``loss_*`` terms, backward, optimizer step; returns the terms as floats.

    A model outside our contract whose loss names have no ``loss_`` prefix (torchvision's own detectors:
    "classification", "bbox_regression") has all its terms summed.
    """
    output = model(*inputs)
    losses = {k: v for k, v in output.items() if k.startswith("loss_")} or dict(output)
    if not losses:
        raise ValueError(f"{type(model).__name__} returned no loss terms in training mode.")
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    optimizer.step()
    return {k: float(v.detach()) for k, v in losses.items()}


@torch.no_grad()
def eval_step(model: nn.Module, batch: Batch) -> Dict[str, float]:
    """One inference call of ``model`` on ``batch``; returns {"detections_per_image": mean number}."""
    detections = model(batch)
    return {"detections_per_image": sum(len(d["boxes"]) for d in detections) / len(detections)}


def build_step(model: nn.Module, cfg: CfgNode, task: str) -> Callable[[Batch], Dict[str, float]]:
    """The per-batch callable of ``task`` ("train": train_step with zero_lr_optimizer; "eval": eval_step)
    for ``model``, which it sets to train or eval mode."""
    if task == "eval":
        model.eval()
        return lambda batch: eval_step(model, batch)
    if task != "train":
        raise ValueError(f"build_step times the train or eval task; got {task!r}.")
    model.train()
    optimizer = zero_lr_optimizer(cfg, model)
    return lambda batch: train_step(model, optimizer, batch)

"""Random detectors that behave like trained ones, for timing backends and comparing their detections.

A ResNet with random weights and identity batch norms lets activations grow layer after layer; its
class logits saturate, so hundreds of anchors score exactly 1.0 and which 100 of them a detector keeps
is decided by how each runtime breaks ties. ``calibrate_random_detector`` sets every batch norm
(frozen, or BatchNorm2d in eval mode: torchvision's untrained backbone) to normalise what it receives
on a sample batch, as pre-training would leave it, and spreads the class logits of a RetinaNet head
over about 0.02-0.2, so detections exist and are distinct. Applied alike to ours and torchvision's, it
changes no timing of the network.
"""
from typing import Any, Dict, List

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

__all__ = ["calibrate_random_detector"]


def _normalise_on_first_input(module: nn.Module, args) -> None:
    x = args[0]
    module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
    module.running_var.copy_(x.var(dim=(0, 2, 3)).clamp(min=1e-5))
    module.weight.fill_(1.0)
    module.bias.fill_(0.0)


def _class_logits_conv(model: nn.Module):
    """The RetinaNet class-output conv of ours (head.cls_score) or torchvision's
    (model.head.classification_head.cls_logits), else None."""
    for path in ("head.cls_score", "model.head.classification_head.cls_logits"):
        try:
            return model.get_submodule(path)
        except AttributeError:
            continue
    return None


@torch.no_grad()
def calibrate_random_detector(model: nn.Module, batch: List[Dict[str, Any]]) -> nn.Module:
    """Calibrate ``model``'s frozen norms on ``batch`` (the model's input list) and spread its class
    logits; see the module docstring. Returns ``model`` in eval mode."""
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d))]
    handles = [m.register_forward_pre_hook(_normalise_on_first_input) for m in norms]
    try:
        model(batch)
    finally:
        for handle in handles:
            handle.remove()
    conv = _class_logits_conv(model)
    if conv is not None:
        conv.bias.copy_(torch.linspace(-4.0, -1.5, conv.bias.numel()))
        conv.weight.mul_(3.0)
    return model

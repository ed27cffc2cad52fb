"""Normalisation layers selectable by name: FrozenBN, BN, SyncBN, GN or "" (none)."""
import difflib
from typing import Callable, Dict, Optional

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

__all__ = ["NORM_LAYERS", "get_norm", "FrozenBatchNorm2d", "freeze_batch_norm"]

NORM_LAYERS: Dict[str, Callable[..., nn.Module]] = {
    "FrozenBN": lambda channels, **_: FrozenBatchNorm2d(channels),
    "BN": lambda channels, **_: nn.BatchNorm2d(channels),
    "SyncBN": lambda channels, **_: nn.SyncBatchNorm(channels),
    "GN": lambda channels, num_groups=32, **_: nn.GroupNorm(num_groups, channels),
}


def get_norm(name: str, channels: int, num_groups: int = 32) -> Optional[nn.Module]:
    """Return a norm layer over ``channels`` for ``name`` in NORM_LAYERS; None for ""."""
    if name == "":
        return None
    if name not in NORM_LAYERS:
        hint = difflib.get_close_matches(name, list(NORM_LAYERS), n=1, cutoff=0.0)
        raise KeyError(
            f"Unknown norm '{name}'. Valid: {sorted(NORM_LAYERS)} or '' for none."
            + (f" Did you mean '{hint[0]}'?" if hint else "")
        )
    return NORM_LAYERS[name](channels, num_groups=num_groups)


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d/SyncBatchNorm inside ``module`` by a FrozenBatchNorm2d copy.

    Returns the converted module (a new object when ``module`` itself is a batch norm).
    """
    if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        if module.affine:
            frozen.weight.copy_(module.weight.detach())
            frozen.bias.copy_(module.bias.detach())
        frozen.running_mean.copy_(module.running_mean)
        frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        new_child = freeze_batch_norm(child)
        if new_child is not child:
            setattr(module, name, new_child)
    return module

"""build_model(cfg), and the generic build(registry, name, cfg, **context) of retinadet.registry."""
import logging
import torch
from torch import nn

from ..config import CfgNode
from ..plugins import load_plugins
from ..registry import META_ARCH_REGISTRY, build

__all__ = ["build", "build_model"]

logger = logging.getLogger(__name__)


def build_model(cfg: CfgNode) -> nn.Module:
    """Import MODEL.PLUGINS, build MODEL.META_ARCHITECTURE on MODEL.DEVICE, apply MODEL.CHANNELS_LAST,
    load MODEL.WEIGHTS, then apply MODEL.COMPILE (the meta-architecture's ``compile_targets``)."""
    from .compile import apply_channels_last, compile_submodules

    load_plugins(cfg.MODEL.PLUGINS)
    model = build(META_ARCH_REGISTRY, cfg.MODEL.META_ARCHITECTURE, cfg)
    model.to(torch.device(cfg.MODEL.DEVICE))
    if cfg.MODEL.CHANNELS_LAST:
        apply_channels_last(model)
    if cfg.MODEL.WEIGHTS:
        from ..checkpoint import load_weights

        load_weights(model, cfg.MODEL.WEIGHTS)
    if cfg.MODEL.COMPILE:
        compile_submodules(model, model.compile_targets)
    return model

"""A shared backbone for the rows of an ablation: one longer run of the preset's pretraining config,
whose trained ResNet every row then starts from (MODEL.BACKBONE.WEIGHTS), as every row of the paper's
Table 1 starts from the same ImageNet ResNet; the rows' FPN and heads start from scratch."""
import os
from typing import Dict

import torch
from torch import Tensor

from retinadet.utils.file_io import atomic_save

__all__ = ["BACKBONE_FILE", "backbone_state_dict", "export_backbone_weights"]

BACKBONE_FILE = "backbone.pth"
_PREFIX = "backbone."


def backbone_state_dict(checkpoint: Dict) -> Dict[str, Tensor]:
    """The ``backbone.*`` tensors of a retinadet checkpoint (``{"model_ema": ..., "model": state dict,
    ...}`` or a bare state dict) with the prefix removed, from the EMA weights when the run kept them
    (the weights it was evaluated with), else from ``model``: our ResNet names its parameters as
    torchvision's does, so the result loads like an ImageNet ResNet state dict. ValueError when there
    is no backbone."""
    state = None
    if isinstance(checkpoint, dict):
        state = checkpoint.get("model_ema") or checkpoint.get("model", checkpoint)
    if not isinstance(state, dict):
        raise ValueError(f"Expected a checkpoint dict with a 'model' state dict; got {type(checkpoint).__name__}.")
    backbone = {k[len(_PREFIX):]: v for k, v in state.items() if k.startswith(_PREFIX)}
    if not backbone:
        some = sorted(state)[:5]
        raise ValueError(f"The checkpoint has no '{_PREFIX}*' tensors (first keys: {some}); it is not a detector's.")
    return backbone


def export_backbone_weights(run_dir: str) -> str:
    """Write ``run_dir/backbone.pth`` (atomically) from ``run_dir/model_final.pth`` unless it exists;
    returns its path. FileNotFoundError naming the run when the run left no final checkpoint."""
    path = os.path.join(run_dir, BACKBONE_FILE)
    if os.path.isfile(path):
        return path
    final = os.path.join(run_dir, "model_final.pth")
    if not os.path.isfile(final):
        raise FileNotFoundError(f"The pretraining run {run_dir} has no model_final.pth; it did not finish.")
    # Tensors and plain containers only: a checkpoint is data, never code to run.
    weights = backbone_state_dict(torch.load(final, map_location="cpu", weights_only=True))
    atomic_save(path, lambda f: torch.save(weights, f))
    return path

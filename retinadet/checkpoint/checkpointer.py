"""DetectionCheckpointer: fvcore's Checkpointer with atomic writes, safe loading and fall-back resume."""
import logging
import os
import re
from typing import Any, Dict, List, Optional

import torch
from fvcore.common.checkpoint import Checkpointer
from torch import nn

from ..utils.file_io import atomic_save
from .loading import load_model_weights, load_weights

__all__ = ["DetectionCheckpointer", "periodic_checkpoint_files"]

_LAST_CHECKPOINT = "last_checkpoint"
_PERIODIC = re.compile(r"^model_(\d{7})\.pth$")
# Buffers a module registers with persistent=False (e.g. RetinaNet's loss normaliser) are not in its
# state_dict but are training state all the same; checkpoints keep them under this key.
_BUFFERS_KEY = "model_nonpersistent_buffers"
# What a failed save leaves intact (checkpoints are written to a temporary name and renamed).
_UNCHANGED = "the files written before it (the previous checkpoint, last_checkpoint) are unchanged"


def periodic_checkpoint_files(save_dir: str) -> List[str]:
    """``model_XXXXXXX.pth`` files of ``save_dir``, oldest iteration first."""
    if not os.path.isdir(save_dir):
        return []
    names = sorted(n for n in os.listdir(save_dir) if _PERIODIC.match(n))
    return [os.path.join(save_dir, n) for n in names]


def _nonpersistent_buffers(model: nn.Module) -> Dict[str, torch.Tensor]:
    saved = set(model.state_dict().keys())
    return {name: buf.detach().cpu().clone() for name, buf in model.named_buffers() if name not in saved}


# Tensor-name prefix -> the config keys that decide its shape, for the message of a resume whose
# config changed (first match wins).
_SHAPE_KEYS = (
    ("head.cls_score", "MODEL.RETINANET.NUM_CLASSES, MODEL.ANCHOR_GENERATOR.SCALES / ASPECT_RATIOS"),
    ("head.bbox_pred", "MODEL.ANCHOR_GENERATOR.SCALES / ASPECT_RATIOS"),
    ("head.", "MODEL.HEAD.* (NUM_CONVS, NORM), MODEL.FPN.OUT_CHANNELS"),
    ("roi_heads.box_predictor", "MODEL.ROI_HEADS.NUM_CLASSES"),
    ("roi_heads.", "MODEL.ROI_BOX_HEAD.* (FC_DIM, NUM_FC, POOLER_RESOLUTION), MODEL.FPN.OUT_CHANNELS"),
    ("proposal_generator.", "MODEL.ANCHOR_GENERATOR.*, MODEL.FPN.OUT_CHANNELS"),
    ("neck.", "MODEL.FPN.* (OUT_CHANNELS, IN_FEATURES, NUM_TOP_LEVELS), MODEL.RESNETS.*"),
    ("backbone.", "MODEL.RESNETS.* (DEPTH, NORM, widths), MODEL.BACKBONE.NAME"),
)


def _likely_keys(names: List[str]) -> List[str]:
    keys = []
    for name in names:
        for prefix, config_keys in _SHAPE_KEYS:
            if name.startswith(prefix):
                if config_keys not in keys:
                    keys.append(config_keys)
                break
    return keys


def check_checkpoint_fits(model_state: Dict[str, torch.Tensor], weights: Dict[str, Any], path: str) -> None:
    """ValueError unless ``weights`` has exactly the model's tensors with the model's shapes, naming
    the mismatched tensors (up to five of each kind) and the config keys that probably changed since
    the checkpoint was saved. Fine-tuning from other weights goes through MODEL.WEIGHTS instead,
    which loads what fits."""
    shapes = [(k, tuple(weights[k].shape), tuple(v.shape)) for k, v in model_state.items()
              if k in weights and isinstance(weights[k], torch.Tensor) and weights[k].shape != v.shape]
    missing = [k for k in model_state if k not in weights]
    unexpected = [k for k in weights if k not in model_state]
    if not (shapes or missing or unexpected):
        return
    parts = []
    if shapes:
        parts.append("shapes differ: " + "; ".join(f"{k} {list(a)} in the checkpoint, {list(b)} in the model"
                                                   for k, a, b in shapes[:5]))
    if missing:
        parts.append(f"{len(missing)} model tensors are not in the checkpoint: {', '.join(missing[:5])}")
    if unexpected:
        parts.append(f"{len(unexpected)} checkpoint tensors are not in the model: {', '.join(unexpected[:5])}")
    keys = _likely_keys([k for k, _, _ in shapes] + missing + unexpected)
    raise ValueError(
        f"Checkpoint {path} does not fit the model, so the run cannot resume from it: {'; '.join(parts)}. The config "
        f"probably changed since it was saved ({'; '.join(keys) or 'the model keys'}): resume with the config of "
        "that run (OUTPUT_DIR/config.yaml), or start a new run with MODEL.WEIGHTS pointing at the checkpoint to "
        "fine-tune from it."
    )


class DetectionCheckpointer(Checkpointer):
    """Saves and loads training checkpoints of a retinadet model.

    A checkpoint is ``{"model": state_dict, "model_nonpersistent_buffers": {...}, <checkpointable>:
    its state_dict(), ...extra keyword data}``. Every file (checkpoint and the ``last_checkpoint``
    pointer) is written to a temporary name, synced and renamed, so a crash never leaves a partial
    file under the real name. Files are read with ``torch.load(weights_only=True)``.

    Args:
        model: the model (a DistributedDataParallel wrapper is unwrapped).
        save_dir: folder of the checkpoints and ``last_checkpoint``.
        save_to_disk: False on ranks other than 0 (they load but never write).
        use_ema_weights: load a checkpoint's ``model_ema`` entry (the weight average of a run with
            MODEL_EMA.ENABLED) into the model instead of ``model``, when it has one: for evaluation.
        checkpointables: objects with ``state_dict()`` / ``load_state_dict()`` (e.g. ``trainer=``,
            ``model_ema=``).
    """

    def __init__(self, model: nn.Module, save_dir: str = "", *, save_to_disk: bool = True,
                 use_ema_weights: bool = False, **checkpointables: Any):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.use_ema_weights = use_ema_weights
        self.logger = logging.getLogger(__name__)

    # ------------------------------------------------------------------ saving
    def save(self, name: str, **kwargs: Any) -> Optional[str]:
        """Write ``<save_dir>/<name>.pth`` atomically and point ``last_checkpoint`` at it.

        Returns the path written, or None when this checkpointer does not save."""
        if not self.save_dir or not self.save_to_disk:
            return None
        data: Dict[str, Any] = {"model": self.model.state_dict(), _BUFFERS_KEY: _nonpersistent_buffers(self.model)}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        os.makedirs(self.save_dir, exist_ok=True)
        path = os.path.join(self.save_dir, f"{name}.pth")
        self.logger.info("Saving checkpoint to %s", path)
        atomic_save(path, lambda f: torch.save(data, f), unchanged=_UNCHANGED)
        self.tag_last_checkpoint(os.path.basename(path))
        return path

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Point ``last_checkpoint`` at ``last_filename_basename`` (atomically)."""
        path = os.path.join(self.save_dir, _LAST_CHECKPOINT)
        atomic_save(path, lambda f: f.write(last_filename_basename.encode()), unchanged=_UNCHANGED)

    # ------------------------------------------------------------------ loading
    def _load_file(self, f: str) -> Dict[str, Any]:
        try:
            return torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:
            size = os.path.getsize(f) if os.path.exists(f) else 0
            raise RuntimeError(
                f"Could not read checkpoint {f} ({size} bytes): {type(e).__name__}: {e}. The file is "
                "truncated or corrupt (for example a copy that was cut short), or not a retinadet checkpoint."
            ) from e

    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        """Load a retinadet checkpoint into the model and the named ``checkpointables`` (default:
        all); returns the entries nobody consumed (e.g. ``meta``).

        Raises FileNotFoundError for a missing file, RuntimeError for one that cannot be read, and
        ValueError (``check_checkpoint_fits``) when its weights do not fit the model: a run resumes
        with the config it was saved with, or not at all.
        """
        if not path:
            self.logger.info("No checkpoint given: the model keeps its initial weights.")
            return {}
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Checkpoint not found: {path}")
        self.logger.info("Loading checkpoint %s", path)
        checkpoint = self._load_file(path)
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
            raise RuntimeError(f"{path} is not a retinadet checkpoint (no 'model' state dict in it).")
        weights = checkpoint.pop("model")
        if self.use_ema_weights and isinstance(checkpoint.get("model_ema"), dict):
            self.logger.info("Using the EMA weights (model_ema) of %s.", path)
            weights = checkpoint.pop("model_ema")
        check_checkpoint_fits(self.model.state_dict(), weights, path)
        load_model_weights(self.model, weights, source=path)
        for name, value in checkpoint.pop(_BUFFERS_KEY, {}).items():
            self._set_buffer(name, value)
        for key in self.checkpointables if checkpointables is None else checkpointables:
            if key in checkpoint:
                self.checkpointables[key].load_state_dict(checkpoint.pop(key))
        return checkpoint

    def _set_buffer(self, name: str, value: torch.Tensor) -> None:
        module_name, _, buffer_name = name.rpartition(".")
        module = self.model.get_submodule(module_name) if module_name else self.model
        current = getattr(module, buffer_name, None)
        if not isinstance(current, torch.Tensor) or current.shape != value.shape:
            self.logger.warning("Checkpoint buffer %s does not fit the model; skipped.", name)
            return
        with torch.no_grad():
            current.copy_(value)

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """With ``resume`` and a checkpoint in ``save_dir``: load the newest readable one with all
        checkpointables (an unreadable newest file is named in an error log and the next older one
        is tried). Otherwise load only the model's weights from ``path`` (any layout
        ``retinadet.checkpoint.load_weights`` knows; "" keeps the initial weights).

        Returns the unconsumed checkpoint entries ({} when nothing was resumed)."""
        if resume:
            candidates = self._resume_candidates()
            if not candidates:
                self.logger.warning(
                    "--resume: no checkpoint in %s; starting from scratch%s.",
                    self.save_dir or "(no OUTPUT_DIR)", f" with MODEL.WEIGHTS {path}" if path else "",
                )
            for candidate in candidates:
                try:
                    return self.load(candidate)
                except RuntimeError as e:
                    self.logger.error("Cannot resume from %s: %s Trying the previous checkpoint.", candidate, e)
            if candidates:
                raise RuntimeError(f"No readable checkpoint in {self.save_dir}; tried {candidates}.")
        if path:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"MODEL.WEIGHTS file not found: {path!r} (cwd: {os.getcwd()}).")
            load_weights(self.model, path)
        return {}

    def _resume_candidates(self) -> List[str]:
        """The file ``last_checkpoint`` names, then the periodic checkpoints, newest first."""
        candidates = []
        last = self.get_checkpoint_file() if self.has_checkpoint() else ""
        if last and os.path.isfile(last):
            candidates.append(last)
        for f in reversed(periodic_checkpoint_files(self.save_dir)):
            if f not in candidates:
                candidates.append(f)
        return candidates

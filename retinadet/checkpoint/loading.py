"""Read checkpoint files, recognise their key layout and load them into a model with a report."""
import logging
import os
from typing import Any, Callable, Dict, List, Mapping

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from .report import BN_COUNTER, WeightLoadReport, group_keys
from .safe_pickle import DisallowedGlobalError, load_restricted_pickle
from .detectron2_converter import convert_detectron2, looks_like_detectron2_checkpoint
from .torchvision_converter import (
    convert_torchvision_faster_rcnn,
    convert_torchvision_resnet,
    convert_torchvision_retinanet,
    looks_like_torchvision_faster_rcnn,
    looks_like_torchvision_resnet,
    looks_like_torchvision_retinanet,
)

__all__ = [
    "CONVERTERS",
    "detect_format",
    "load_checkpoint_file",
    "load_model_weights",
    "load_weights",
]

logger = logging.getLogger(__name__)

# Key layout name -> function renaming its keys to retinadet's.
CONVERTERS: Dict[str, Callable[[Dict[str, Tensor]], Dict[str, Tensor]]] = {
    "retinadet": dict,
    "torchvision": convert_torchvision_retinanet,
    "torchvision_faster_rcnn": convert_torchvision_faster_rcnn,
    "torchvision_resnet": convert_torchvision_resnet,
    "detectron2": convert_detectron2,
}
_OUR_PREFIXES = ("backbone.", "neck.", "head.", "proposal_generator.", "roi_heads.")


def _read_pickle(path: str) -> Any:
    with open(path, "rb") as f:
        # detectron2 model-zoo files were pickled by Python 2 (str as bytes): latin1 maps every
        # byte to one character, so numpy arrays inside come back intact. Only numpy arrays and
        # plain containers are admitted: a global such as os.system is refused before it is called.
        return load_restricted_pickle(f, encoding="latin1")


def _read_torch(path: str) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def _as_state_dict(obj: Any, path: str) -> Dict[str, Tensor]:
    """Unwrap ``{"model_ema": ...}`` / ``{"model": ...}`` / ``{"state_dict": ...}`` and turn numpy arrays
    into tensors."""
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"Checkpoint {path} holds a {type(obj).__name__}, expected a dict of tensors "
            "(optionally under a 'model' or 'state_dict' entry)."
        )
    # A training checkpoint with a weight EMA (MODEL_EMA) holds both: the average is what was evaluated.
    for wrapper in ("model_ema", "model", "state_dict"):
        if isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    state_dict: Dict[str, Tensor] = {}
    bad: List[str] = []
    for key, value in obj.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if isinstance(value, Tensor):
            state_dict[key] = value
        else:
            bad.append(f"{key!r} ({type(value).__name__})")
    if bad:
        raise ValueError(
            f"Checkpoint {path} is not a state dict: entries {', '.join(bad[:5])} are neither "
            "tensors nor numpy arrays."
        )
    return state_dict


def read_checkpoint_meta(path: str) -> Dict[str, Any]:
    """The ``"meta"`` entry a retinadet training checkpoint carries (``thing_classes``, ``config``), read
    as safely as the weights are; {} for a file without one (torchvision or detectron2 weights)."""
    path = os.fspath(path)
    if path.endswith(".pkl") or not os.path.isfile(path):
        return {}
    try:
        obj = _read_torch(path)
    except Exception:  # unreadable: load_checkpoint_file reports it, with the reason
        return {}
    meta = obj.get("meta") if isinstance(obj, Mapping) else None
    return dict(meta) if isinstance(meta, Mapping) else {}


def load_checkpoint_file(path: str) -> Dict[str, Tensor]:
    """Read a state dict from ``path`` onto the CPU.

    ``.pkl`` files (detectron2 model zoo: ``{"model": {name: numpy array}, "__author__": ...}``)
    are read by a restricted unpickler (``safe_pickle``) that admits only numpy arrays, numbers,
    strings and plain containers, so a file cannot run code while it loads. Every other file is read
    with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers.
    A top-level ``"model_ema"`` (the weight average of a run with MODEL_EMA.ENABLED, the weights it
    evaluated), ``"model"`` or ``"state_dict"`` entry is unwrapped, in that order of preference.

    Args:
        path: checkpoint file (.pth, .pt, .pkl).

    Returns:
        name -> tensor (numpy arrays converted with ``torch.from_numpy``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RuntimeError: the file cannot be read (e.g. truncated, or not a checkpoint).
        ValueError: the file holds something other than a (wrapped) dict of tensors, or a ``.pkl``
            file names a global that weights do not need (the message names it).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    reader = _read_pickle if path.endswith(".pkl") else _read_torch
    try:
        obj = reader(path)
    except DisallowedGlobalError as e:
        raise ValueError(f"Refusing to load checkpoint {path}: {e}.") from e
    except Exception as e:  # torch / pickle raise many types for a damaged file
        kind = "pickle (.pkl)" if reader is _read_pickle else "torch.save (weights_only=True)"
        raise RuntimeError(
            f"Could not read checkpoint {path} as a {kind} file "
            f"({os.path.getsize(path)} bytes): {type(e).__name__}: {e}. "
            "The file may be truncated or corrupt (download it again), not a checkpoint, or "
            "hold objects other than tensors and plain containers (re-save only its state dict)."
        ) from e
    return _as_state_dict(obj, path)


def detect_format(state_dict: Mapping[str, Any]) -> str:
    """Name the key layout of ``state_dict``: a key of CONVERTERS.

    "detectron2" (``backbone.bottom_up.*``, ``backbone.fpn_lateral*``), "torchvision_faster_rcnn"
    (``rpn.head.*``, ``roi_heads.box_head.fc6.*``), "torchvision" RetinaNet
    (``backbone.body.*``, ``backbone.fpn.*``, ``head.classification_head.*``),
    "torchvision_resnet" (bare ImageNet ResNet: ``conv1.weight``, ``layer1.*``) or
    "retinadet" (``backbone.``, ``neck.``, ``head.``, ``proposal_generator.``, ``roi_heads.`` with
    retinadet's module names).

    Raises:
        ValueError: no key has any of these prefixes; a few keys are named.
    """
    keys = list(state_dict)
    if looks_like_detectron2_checkpoint(keys):
        return "detectron2"
    # Before RetinaNet's test: a Faster R-CNN has backbone.body.* and backbone.fpn.* too.
    if looks_like_torchvision_faster_rcnn(keys):
        return "torchvision_faster_rcnn"
    if looks_like_torchvision_retinanet(keys):
        return "torchvision"
    if looks_like_torchvision_resnet(keys):
        return "torchvision_resnet"
    if any(k.startswith(_OUR_PREFIXES) for k in keys):
        return "retinadet"
    raise ValueError(
        f"Unrecognised checkpoint layout (keys such as {keys[:5]}): expected retinadet keys "
        f"({', '.join(_OUR_PREFIXES)}), a torchvision RetinaNet, Faster R-CNN or ResNet, or a "
        "detectron2 RetinaNet or Faster / Mask R-CNN."
    )


def _strip_wrapper_prefix(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Remove the ``module.`` prefix that (Distributed)DataParallel adds to every key."""
    prefix = "module."
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def _is_frozen_norm(model: nn.Module, module_name: str) -> bool:
    try:
        return isinstance(model.get_submodule(module_name), FrozenBatchNorm2d)
    except AttributeError:
        return False


def _drop_frozen_counters(
    model: nn.Module, state_dict: Dict[str, Tensor], model_keys: Mapping[str, Tensor]
) -> Dict[str, Tensor]:
    """Drop BatchNorm ``num_batches_tracked`` counters where the model's norm is frozen.

    FrozenBatchNorm2d has no such buffer; the counter only matters to a BatchNorm in training.
    """
    return {
        k: v
        for k, v in state_dict.items()
        if not (
            k.endswith("." + BN_COUNTER)
            and k not in model_keys
            and _is_frozen_norm(model, k[: -len(BN_COUNTER) - 1])
        )
    }


def _counter_of_loaded_norm(key: str, loaded: Mapping[str, Tensor]) -> bool:
    """True for a BatchNorm counter whose statistics came from a frozen-norm checkpoint."""
    if not key.endswith("." + BN_COUNTER):
        return False
    return key[: -len(BN_COUNTER)] + "running_mean" in loaded


def _log_report(report: WeightLoadReport, shapes: Dict[str, str]) -> None:
    where = f" from {report.source}" if report.source else ""
    logger.info("Loaded %d tensors%s.", len(report.loaded), where)
    if report.skipped_shape:
        lines = [f"  {k}: checkpoint {shapes[k]}" for k in report.skipped_shape]
        logger.warning(
            "Skipped %d tensor(s)%s whose shape differs from the model's:\n%s",
            len(lines), where, "\n".join(lines),
        )
    problems = (("missing from", report.missing), ("unexpected in", report.unexpected))
    for what, keys in problems:
        if keys:
            logger.warning(
                "%d key(s) %s the checkpoint%s:\n%s",
                len(keys), what, where, "\n".join("  " + g for g in group_keys(keys)),
            )


def load_model_weights(
    model: nn.Module, state_dict: Mapping[str, Tensor], source: str = ""
) -> WeightLoadReport:
    """Load ``state_dict`` (already in retinadet's names) into ``model`` non-strictly.

    Tensors whose shape differs from the model's (e.g. ``head.cls_score`` trained for another
    class count) are skipped and named, with both shapes, in one warning. Missing and
    unexpected keys are logged grouped by module. BatchNorm ``num_batches_tracked`` counters are
    dropped where the model's norm is a FrozenBatchNorm2d, and not reported as missing where the
    model has a BatchNorm but the checkpoint (from frozen norms) has only its statistics.

    Args:
        model: the module to fill in place.
        state_dict: name -> tensor in the model's naming scheme.
        source: where the weights came from, for the log messages.

    Returns:
        WeightLoadReport with ``loaded``, ``skipped_shape``, ``missing`` (shape-skipped keys
        excluded) and ``unexpected`` filled.
    """
    model_state = model.state_dict()
    state_dict = _drop_frozen_counters(model, dict(state_dict), model_state)
    shapes: Dict[str, str] = {}
    to_load: Dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key in model_state and tuple(value.shape) != tuple(model_state[key].shape):
            shapes[key] = f"{tuple(value.shape)}, model {tuple(model_state[key].shape)}"
            continue
        to_load[key] = value
    result = model.load_state_dict(to_load, strict=False)
    missing = [
        k
        for k in result.missing_keys
        if k not in shapes and not _counter_of_loaded_norm(k, to_load)
    ]
    unexpected = list(result.unexpected_keys)
    unexpected_set = set(unexpected)
    report = WeightLoadReport(
        source=source,
        loaded=[k for k in to_load if k not in unexpected_set],
        skipped_shape=list(shapes),
        missing=missing,
        unexpected=unexpected,
    )
    _log_report(report, shapes)
    return report


def load_weights(model: nn.Module, path: str) -> WeightLoadReport:
    """Read ``path``, convert its keys from the detected layout, and load them into ``model``.

    Layouts: retinadet's own, torchvision RetinaNet (v1/v2), torchvision Faster R-CNN (v1),
    torchvision ImageNet ResNet,
    detectron2 RetinaNet (see :func:`detect_format`). ``.pkl`` files are read by a restricted
    unpickler that admits only arrays and plain data (see :func:`load_checkpoint_file`).

    Returns:
        The report of :func:`load_model_weights`.
    """
    state_dict = _strip_wrapper_prefix(load_checkpoint_file(path))
    layout = detect_format(state_dict)
    converted = CONVERTERS[layout](state_dict)
    return load_model_weights(model, converted, source=f"{os.fspath(path)} ({layout} layout)")

"""The config of a benchmark run: loading it, reading keys by name, its number of classes, its default
synthetic image size and whether its data sets are registered."""
import math
import os
from typing import Any, Optional, Sequence, Tuple

import torch

from retinadet.config import CfgNode, get_cfg
from retinadet.data import DatasetCatalog, register_builtin_datasets

from .options import BenchmarkError

__all__ = ["NUM_CLASSES_KEY", "config_value", "default_size", "load_config", "num_classes", "registered",
           "require_registered"]

# The key holding the number of object classes K (no background), per meta-architecture.
NUM_CLASSES_KEY = {"RetinaNet": "MODEL.RETINANET.NUM_CLASSES", "GeneralizedRCNN": "MODEL.ROI_HEADS.NUM_CLASSES"}


def load_config(config_file: str, opts: Sequence[str] = (), device: Optional[str] = None) -> CfgNode:
    """get_cfg() <- ``config_file`` <- KEY VALUE ``opts`` <- ``device`` (when given); frozen. BenchmarkError
    for a missing file, an unknown key or value, or a device that is not there."""
    if not os.path.isfile(config_file):
        raise BenchmarkError(f"--config-file {config_file!r} does not exist (cwd: {os.getcwd()}).")
    cfg = get_cfg()
    try:
        cfg.merge_from_file(config_file)
        cfg.merge_from_list(list(opts or []))
    except (KeyError, ValueError) as e:
        raise BenchmarkError(f"config: {e.args[0] if e.args else e}") from e
    if device:
        cfg.MODEL.DEVICE = device
    try:
        torch_device = torch.device(cfg.MODEL.DEVICE)
    except RuntimeError as e:
        raise BenchmarkError(f"device {cfg.MODEL.DEVICE!r}: {e}") from e
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError(f"device {cfg.MODEL.DEVICE!r} asked for, but CUDA is not available.")
    cfg.freeze()
    return cfg


def config_value(cfg: CfgNode, key: str) -> Any:
    """The value of a dotted ``key`` (e.g. "MODEL.RESNETS.DEPTH") of ``cfg``."""
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def num_classes(cfg: CfgNode) -> int:
    """The config's number of object classes K: NUM_CLASSES_KEY of its meta-architecture
    (MODEL.RETINANET.NUM_CLASSES for one without an entry)."""
    return config_value(cfg, NUM_CLASSES_KEY.get(cfg.MODEL.META_ARCHITECTURE, "MODEL.RETINANET.NUM_CLASSES"))


def default_size(cfg: CfgNode) -> Tuple[int, int]:
    """The default synthetic image size: (MIN_SIZE_TEST, a 3:2 width rounded up to a multiple of 32 and
    capped at MAX_SIZE_TEST)."""
    height = cfg.INPUT.MIN_SIZE_TEST
    return height, min(cfg.INPUT.MAX_SIZE_TEST, math.ceil(1.5 * height / 32) * 32)


def registered(cfg: CfgNode, names: Sequence[str]) -> bool:
    """Whether ``names`` is non-empty and every name is registered (after the built-in sets)."""
    register_builtin_datasets(cfg)
    return bool(names) and all(name in DatasetCatalog for name in names)


def require_registered(cfg: CfgNode, key: str, what: str) -> None:
    """Raise BenchmarkError, saying that ``what`` needs them, unless every name of DATASETS.<key> is
    registered."""
    names = list(getattr(cfg.DATASETS, key))
    if not registered(cfg, names):
        raise BenchmarkError(
            f"{what} needs the data sets of DATASETS.{key}, but it is {names} and the registered ones are "
            f"{DatasetCatalog.list()}. Use a config with data sets (e.g. configs/shapes/*.yaml) or --input synthetic."
        )

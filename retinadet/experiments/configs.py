"""Config handling of experiments: finding config files (paths or model-zoo names), merging overrides
with the config system's checks, the run hash, the iteration budget and the overrides that make
experiment runs cheap."""
import hashlib
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from retinadet import model_zoo
from retinadet.config import CfgNode, get_cfg

__all__ = [
    "CHECKPOINT_PERIOD_NEVER",
    "ExperimentInputError",
    "SPEED_OVERRIDES",
    "check_same_datasets",
    "config_hash",
    "format_value",
    "load_config",
    "model_zoo_config_path",
    "overrides_from_dict",
    "resolve_config_path",
    "schedule_overrides",
]

# A checkpoint period no run reaches: only model_final.pth is written.
CHECKPOINT_PERIOD_NEVER = 10**9

# Applied to every experiment run before the user's overrides (which may undo them): no periodic
# checkpoints, no evaluation before the last iteration, no pictures, no loss-curve drawing.
SPEED_OVERRIDES: Tuple[str, ...] = (
    "SOLVER.CHECKPOINT_PERIOD", str(CHECKPOINT_PERIOD_NEVER),
    "TEST.EVAL_PERIOD", "0",
    "TEST.VIS_IMAGES", "0",
    "TRAIN.LOSS_CURVE", "False",
)


class ExperimentInputError(ValueError):
    """Bad input to an experiment (config path, preset name, override), found before any training."""


def resolve_config_path(path: str, what: str = "config file") -> str:
    """The absolute path of ``path``: a file that exists (relative to the working directory or
    absolute), else a model-zoo name such as ``"shapes/retinanet_R_18_FPN.yaml"`` (see
    ``retinadet.model_zoo``; ``configs/shapes/...`` is taken as the same name).

    Raises ExperimentInputError naming ``what``, ``path``, where it looked and the closest model-zoo
    names when it is neither."""
    try:
        return model_zoo.resolve_config(path, what=what)
    except model_zoo.ConfigNotFoundError as e:
        raise ExperimentInputError(str(e)) from e
    except FileNotFoundError as e:  # no model zoo at all (a package built without its configs)
        raise ExperimentInputError(f"{what} {path!r} does not exist in the working directory {os.getcwd()}, "
                                   f"and {e}") from e


def model_zoo_config_path(name: str, what: str = "config") -> str:
    """The absolute path of the model-zoo config ``name`` (presets name their configs this way, so a
    file of the same name in the working directory does not replace them). ExperimentInputError
    naming ``what``, ``name``, the folder searched and the closest name when there is none."""
    try:
        return model_zoo.get_config_file(name)
    except FileNotFoundError as e:
        raise ExperimentInputError(f"{what}: {e}") from e


def format_value(value: Any) -> str:
    """A Python value as a command-line override value the config system decodes back to it
    (``repr``: 0.25 -> "0.25", "" -> "''", [1.0] -> "[1.0]")."""
    if isinstance(value, (list, tuple)):
        return repr(list(value))
    return repr(value)


def overrides_from_dict(overrides: Dict[str, Any]) -> List[str]:
    """``{"MODEL.CLS_LOSS.GAMMA": 2.0}`` -> ``["MODEL.CLS_LOSS.GAMMA", "2.0"]`` (keys in the given order)."""
    out: List[str] = []
    for key, value in overrides.items():
        out += [key, format_value(value)]
    return out


def load_config(config_file: str, overrides: Sequence[str] = (), source: Optional[str] = None) -> CfgNode:
    """``get_cfg()`` <- ``config_file`` <- ``overrides`` (KEY VALUE strings), as train_net merges them
    (before its batch-size scaling). Not frozen.

    Raises ExperimentInputError carrying the config system's message (with its "Did you mean")
    for an unknown key, a value of the wrong type, an odd number of items or an OUTPUT_DIR override
    (experiments choose OUTPUT_DIR themselves). ``source`` says where the overrides came from."""
    overrides = list(overrides)
    where = f" in {source}" if source else ""
    if len(overrides) % 2:
        raise ExperimentInputError(f"Overrides{where} must be KEY VALUE pairs; got an odd number of items: {overrides}.")
    if "OUTPUT_DIR" in overrides[0::2]:
        raise ExperimentInputError(
            f"OUTPUT_DIR cannot be overridden{where}: each run writes to its own folder under --output-dir."
        )
    cfg = get_cfg()
    try:
        cfg.merge_from_file(config_file)
    except (KeyError, ValueError) as e:
        raise ExperimentInputError(f"Config file {config_file}: {_message(e)}") from e
    try:
        cfg.merge_from_list(overrides)
    except (KeyError, ValueError, AttributeError) as e:
        raise ExperimentInputError(f"Overrides{where}, merged into {config_file}: {_message(e)}") from e
    return cfg


def _message(e: Exception) -> str:
    # KeyError's str() wraps the message in quotes.
    return e.args[0] if isinstance(e, KeyError) and e.args else str(e)


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    return node


def config_hash(cfg: CfgNode, length: int = 10) -> str:
    """A hex digest of the whole merged config except OUTPUT_DIR: runs with the same effective
    config (however it was spelled) share it."""
    plain = _plain(cfg)
    plain.pop("OUTPUT_DIR", None)
    text = json.dumps(plain, sort_keys=True, default=repr)
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def schedule_overrides(cfg: CfgNode, max_iter: int) -> List[str]:
    """Overrides that give ``cfg`` a schedule of ``max_iter`` iterations: STEPS and WARMUP_ITERS are
    scaled by ``max_iter / cfg.SOLVER.MAX_ITER`` (rounded; a positive value stays >= 1), so the
    schedule keeps its shape. Returns [] when the budget is already ``max_iter``."""
    max_iter = int(max_iter)
    if max_iter <= 0:
        raise ExperimentInputError(f"The iteration budget must be a positive number of iterations; got {max_iter}.")
    s = cfg.SOLVER
    if max_iter == s.MAX_ITER:
        return []
    factor = max_iter / s.MAX_ITER

    def scaled(n: int) -> int:
        return max(1, int(round(n * factor))) if n > 0 else int(n)

    return [
        "SOLVER.MAX_ITER", str(max_iter),
        "SOLVER.STEPS", format_value([scaled(x) for x in s.STEPS]),
        "SOLVER.WARMUP_ITERS", str(scaled(s.WARMUP_ITERS)),
    ]


def check_same_datasets(named_cfgs: Sequence[Tuple[str, CfgNode]]) -> None:
    """Raise ExperimentInputError naming two configs whose DATASETS.TRAIN or DATASETS.TEST differ."""
    if not named_cfgs:
        return
    first_name, first = named_cfgs[0]
    for name, cfg in named_cfgs[1:]:
        for key in ("TRAIN", "TEST"):
            a, b = list(first.DATASETS[key]), list(cfg.DATASETS[key])
            if a != b:
                raise ExperimentInputError(
                    f"Configs compared must use the same data: DATASETS.{key} is {a} in {first_name} but {b} in "
                    f"{name}. Pass DATASETS.{key} as an override to use one set for all."
                )

"""CfgNode: fvcore's config with strict, explained merges and safe YAML only."""
import difflib
import logging
import os
import re
from typing import Any, Callable, Dict, List, Tuple

import yaml
from fvcore.common.config import BASE_KEY
from fvcore.common.config import CfgNode as _FvcoreCfgNode

from .detectron2 import looks_like_detectron2, translate_detectron2
from .yaml_loader import load_config_yaml

__all__ = ["CfgNode", "config_extension", "get_cfg"]

logger = logging.getLogger(__name__)
_CONFIG_EXTENSIONS: List[Callable[["CfgNode"], None]] = []
_APPLIED = "__applied_extensions__"


def config_extension(fn: Callable[["CfgNode"], None]) -> Callable[["CfgNode"], None]:
    """Decorator for a plug-in's ``add_<name>_config(cfg)``: its keys join every config.

    The function is applied to configs made by ``get_cfg()`` afterwards, and to a config that
    imports the plug-in through MODEL.PLUGINS while merging a file or a list.
    """
    _CONFIG_EXTENSIONS.append(fn)
    return fn


def _full_keys(node: Dict, prefix: str = "") -> List[str]:
    keys = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, dict):
            keys.extend(_full_keys(v, full + "."))
    return keys


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """Return ``value`` converted to the type of ``default``; ValueError when it cannot be."""
    if default is None or value is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(default, int) and isinstance(value, int):
        return value
    elif isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    elif isinstance(default, str) and isinstance(value, str):
        return value
    raise ValueError(
        f"Config key {key} (from {source}) got {value!r} of type {type(value).__name__}; "
        f"expected {type(default).__name__} like the default {default!r}."
    )


def _base_path(base: str, filename: str) -> str:
    """A ``_BASE_`` path as fvcore resolves it: ``~`` expanded, relative to the naming file unless
    absolute or a URL."""
    if base.startswith("~"):
        base = os.path.expanduser(base)
    if base.startswith("/") or "://" in base:
        return base
    return os.path.join(os.path.dirname(filename), base)


def _merge_into(new: Dict, merged: Dict, source: str) -> None:
    """Merge the nested dict ``new`` into ``merged`` (``new`` wins); ValueError naming ``source`` when
    it gives a plain value where the base has a section, or the reverse."""
    for k, v in new.items():
        if isinstance(v, dict) and k in merged:
            if not isinstance(merged[k], dict):
                raise ValueError(f"Config file {source}: {k} is a section here but a value in its base.")
            _merge_into(v, merged[k], source)
        else:
            merged[k] = v


def _resolve_plugin(name: str, cfg_filename: str) -> str:
    """A relative .py plug-in path is looked up next to the config file first, then in the cwd."""
    if not name.endswith(".py") or os.path.isabs(name):
        return name
    beside = os.path.join(os.path.dirname(os.path.abspath(cfg_filename)), name)
    return beside if os.path.isfile(beside) else name


class CfgNode(_FvcoreCfgNode):
    """A config tree: ``_BASE_`` inheritance, ``KEY VALUE`` overrides, strict keys and types.

    Unknown keys raise KeyError naming the closest valid key; values of the wrong type raise
    ValueError naming key, value and expected type; YAML tags that run code are refused.
    """

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> Dict:
        """Load a YAML file and its ``_BASE_`` files (one path or a list, relative to the file that
        names them) as one dict, the file's values over its bases'. Only safe YAML is accepted.
        ValueError naming the file for a file that is not a YAML mapping (empty, binary, a list, a
        code tag, broken YAML) and for a ``_BASE_`` cycle (naming the chain)."""
        if allow_unsafe:
            raise ValueError("retinadet never loads unsafe YAML (allow_unsafe must be False).")
        return cls._load_with_bases(filename, ())

    @classmethod
    def _load_with_bases(cls, filename: str, chain: Tuple[str, ...]) -> Dict:
        key = filename if "://" in filename else os.path.realpath(filename)
        if key in chain:
            cycle = " -> ".join(list(chain[chain.index(key):]) + [key])
            raise ValueError(f"Config file {filename} is its own _BASE_ through the cycle {cycle}; remove one _BASE_.")
        loaded = cls._read_mapping(filename)
        bases = loaded.pop(BASE_KEY, None)
        if bases is None:
            return loaded
        if isinstance(bases, str):
            bases = [bases]
        if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
            raise ValueError(f"Config file {filename}: _BASE_ must be a path or a list of paths; got {bases!r}.")
        merged: Dict = {}
        for base in bases:
            path = _base_path(base, filename)
            if "://" not in path and not os.path.isfile(path):
                raise FileNotFoundError(f"Config file {filename} names _BASE_ {base!r}, which does not exist "
                                        f"(looked for {path}; a relative _BASE_ is relative to the file naming it).")
            _merge_into(cls._load_with_bases(path, chain + (key,)), merged, base)
        _merge_into(loaded, merged, filename)
        return merged

    @classmethod
    def _read_mapping(cls, filename: str) -> Dict:
        """The top-level mapping of one YAML file (its ``_BASE_`` left in)."""
        if filename.endswith(".py"):
            raise ValueError(
                f"Config file {filename} is a Python config (detectron2's LazyConfig); Python configs are not "
                "executed: retinadet reads YAML configs. Use the YAML config of that model (detectron2's "
                "model zoo has one beside most .py files, e.g. COCO-Detection/retinanet_R_50_FPN_1x.yaml)."
            )
        try:
            with cls._open_cfg(filename) as f:
                text = f.read()
        except UnicodeDecodeError as e:
            raise ValueError(f"Config file {filename} is not a text file (byte {e.start} is not UTF-8); a config "
                             "is a YAML mapping of keys such as MODEL: ...") from e
        try:
            loaded = load_config_yaml(text)
        except yaml.constructor.ConstructorError as e:
            raise ValueError(
                f"Config file {filename} uses a YAML tag that is not allowed: {e.problem} "
                f"({e.problem_mark}). Write plain values (numbers, strings, lists) instead."
            ) from e
        except yaml.YAMLError as e:
            raise ValueError(f"Config file {filename} is not valid YAML: {e}") from e
        if loaded is None:
            raise ValueError(f"Config file {filename} is empty; a config is a YAML mapping of keys such as MODEL: ...")
        if not isinstance(loaded, dict):
            raise ValueError(f"Config file {filename} holds a YAML {type(loaded).__name__} at its top level; a config "
                             "is a mapping of keys such as MODEL: ...")
        return loaded

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        """Merge a YAML file (with its ``_BASE_`` chain) into this config, checking every key. A detectron2
        config (recognised by its keys) is translated first (``retinadet.config.detectron2``)."""
        loaded = self.load_yaml_with_base(cfg_filename, allow_unsafe=allow_unsafe)
        keys = _full_keys(self)
        if looks_like_detectron2(loaded, keys):
            logger.info("Reading %s as a detectron2 config (its keys translated to retinadet's).", cfg_filename)
            loaded = translate_detectron2(loaded, f"file {cfg_filename}", keys)
        model = loaded.get("MODEL") if isinstance(loaded, dict) else None
        if isinstance(model, dict) and model.get("PLUGINS"):
            model["PLUGINS"] = [_resolve_plugin(p, cfg_filename) for p in model["PLUGINS"]]
            self._load_plugins(model["PLUGINS"])
        self._merge_checked(loaded or {}, source=f"file {cfg_filename}")

    def merge_from_list(self, cfg_list: List[str]) -> "CfgNode":
        """Merge ``[KEY, VALUE, KEY, VALUE, ...]`` (command-line overrides), checking every key."""
        flags = [item for item in cfg_list if isinstance(item, str) and re.fullmatch(r"--[A-Za-z][\w-]*", item)]
        if flags:
            raise ValueError(
                f"{flags[0]} is a command-line flag but comes after the KEY VALUE overrides ({cfg_list}); "
                "flags go before the first override, e.g. --eval-only SOLVER.BASE_LR 0.01."
            )
        if len(cfg_list) % 2 != 0:
            raise ValueError(
                f"Overrides must be KEY VALUE pairs; got an odd number of items: {cfg_list}"
            )
        nested: Dict = {}
        for key, raw in zip(cfg_list[0::2], cfg_list[1::2]):
            node = nested
            parts = key.split(".")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = self._decode_cfg_value(raw)
        model = nested.get("MODEL")
        plugins = model.get("PLUGINS") if isinstance(model, dict) else None
        if plugins:
            self._load_plugins(plugins)
        self._merge_checked(nested, source="command-line overrides")
        return self

    def _load_plugins(self, plugins: List[str]) -> None:
        from ..plugins import load_plugins

        load_plugins(plugins)
        self.apply_extensions()

    def apply_extensions(self) -> None:
        """Apply registered ``config_extension`` functions this config has not seen yet."""
        applied = self.__dict__.setdefault(_APPLIED, set())
        for fn in _CONFIG_EXTENSIONS:
            key = f"{fn.__module__}.{fn.__qualname__}"
            if key not in applied:
                was_frozen = self.is_frozen()
                self.defrost()
                fn(self)
                if was_frozen:
                    self.freeze()
                applied.add(key)

    def _merge_checked(self, loaded: Dict, source: str) -> None:
        if self.is_frozen():
            raise AttributeError(f"Cannot merge {source} into a frozen config; clone() it first.")
        checked = self._check(loaded, self, prefix="", source=source)
        super().merge_from_other_cfg(CfgNode(checked))

    def _check(self, loaded: Dict, reference: Dict, prefix: str, source: str) -> Dict:
        """Return ``loaded`` with values coerced to the reference types; raise on bad keys."""
        out = {}
        for key, value in loaded.items():
            full = f"{prefix}{key}"
            if key == "_BASE_":
                continue
            if key not in reference:
                candidates = _full_keys(self)
                hint = difflib.get_close_matches(full, candidates, n=1, cutoff=0.0)
                raise KeyError(
                    f"Unknown config key '{full}' (from {source})."
                    + (f" Did you mean '{hint[0]}'?" if hint else "")
                    + " Plug-ins add their own keys with add_<name>_config(cfg)."
                )
            default = reference[key]
            if isinstance(default, dict):
                if not isinstance(value, dict):
                    raise ValueError(
                        f"Config key {full} (from {source}) is a group of keys; got {value!r}."
                    )
                out[key] = self._check(value, default, full + ".", source)
            else:
                out[key] = _coerce(full, value, default, source)
        return out

    def dump(self, **kwargs: Any) -> str:
        """Return the config as YAML text."""
        return super().dump(**kwargs)


def get_cfg() -> CfgNode:
    """Return a fresh copy of the default config, with installed plug-ins' keys added."""
    from ..plugins import load_entry_point_plugins
    from .defaults import _C

    load_entry_point_plugins()
    cfg = _C.clone()
    cfg.apply_extensions()
    return cfg

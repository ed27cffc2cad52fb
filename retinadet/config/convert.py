"""Writing another framework's config as a plain retinadet YAML (``tools/convert_config.py``).

``translated_yaml(path)`` loads a detectron2 config the way ``--config-file`` does (its ``_BASE_`` chain,
translated from detectron2's defaults) and returns YAML text holding every value that differs from
retinadet's defaults, so the file loads on its own, without detectron2's files, into the same config.
``convert_config`` writes it atomically after checking exactly that.
"""
from typing import Any, Dict, Tuple

import yaml

from ..utils.file_io import atomic_write_text
from .config import CfgNode, _full_keys, get_cfg
from .detectron2 import looks_like_detectron2

__all__ = ["translated_yaml", "convert_config"]


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _differences(cfg: Dict, defaults: Dict) -> Dict:
    out: Dict = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            inner = _differences(value, defaults.get(key, {}))
            if inner:
                out[key] = inner
        elif key not in defaults or _plain(value) != _plain(defaults[key]):
            out[key] = _plain(value)
    return out


def _translate(path: str, source: str) -> Tuple[CfgNode, str]:
    """(the config ``path`` loads into, its retinadet YAML text); see ``translated_yaml``."""
    if source != "detectron2":
        raise ValueError(f"--source {source!r} is not supported; configs convert from: 'detectron2'.")
    cfg = get_cfg()
    if not looks_like_detectron2(CfgNode.load_yaml_with_base(path), _full_keys(cfg)):
        raise ValueError(f"{path} is not a detectron2 config (no VERSION: 2 and no key only detectron2 has); "
                         "a retinadet config needs no conversion.")
    cfg.merge_from_file(path)
    body = yaml.safe_dump(_differences(cfg, get_cfg()), sort_keys=False, default_flow_style=None)
    text = (f"# Translated from the detectron2 config {path} by tools/convert_config.py: the values that differ\n"
            "# from retinadet's defaults (retinadet/config/defaults.py). Loads on its own.\n" + body)
    return cfg, text


def translated_yaml(path: str, source: str = "detectron2") -> str:
    """The retinadet YAML text of the ``source`` config at ``path`` (only the values that differ from
    retinadet's defaults, with a header naming the source). ValueError when ``path`` is not a config of
    that source, or names what retinadet lacks (see retinadet.config.detectron2)."""
    return _translate(path, source)[1]


def convert_config(input_path: str, output_path: str, source: str = "detectron2") -> str:
    """Write ``translated_yaml(input_path)`` to ``output_path`` atomically, after checking that the text
    loads into the same config as ``input_path``; returns the text."""
    expected, text = _translate(input_path, source)
    reloaded = get_cfg()
    reloaded._merge_checked(yaml.safe_load(text) or {}, source=f"the translation of {input_path}")
    if _differences(reloaded, expected) or _differences(expected, reloaded):
        raise RuntimeError(f"The translation of {input_path} does not load into the same config; not written.")
    atomic_write_text(output_path, text)
    return text

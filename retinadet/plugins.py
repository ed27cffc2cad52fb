"""Import user plug-ins: modules or .py files named in MODEL.PLUGINS, and installed packages."""
import hashlib
import importlib
import importlib.util
import logging
import os
import sys
from importlib.metadata import entry_points
from types import ModuleType
from typing import Iterable, List

__all__ = ["ENTRY_POINT_GROUP", "import_plugin", "load_plugins", "load_entry_point_plugins"]

ENTRY_POINT_GROUP = "retinadet.plugins"
logger = logging.getLogger(__name__)
_entry_points_loaded = False


def _import_file(path: str) -> ModuleType:
    """Import a .py file once under a stable module name derived from its absolute path."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Plug-in file '{path}' (from MODEL.PLUGINS) does not exist.")
    digest = hashlib.sha1(path.encode()).hexdigest()[:10]
    stem = os.path.splitext(os.path.basename(path))[0]
    module_name = f"retinadet_plugin_{stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def import_plugin(name: str) -> ModuleType:
    """Import one plug-in: a dotted module name, or a path to a .py file. Returns the module."""
    if name.endswith(".py") or os.sep in name:
        return _import_file(name)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):
            raise ModuleNotFoundError(
                f"Plug-in module '{name}' (from MODEL.PLUGINS) cannot be imported: {e}. "
                "Give an importable module name or a path to a .py file.",
                name=e.name,
            ) from e
        raise


def load_entry_point_plugins() -> List[str]:
    """Import every installed package that announces itself in the 'retinadet.plugins' group.

    Runs once per process. Returns the names of the entry points loaded.
    """
    global _entry_points_loaded
    if _entry_points_loaded:
        return []
    _entry_points_loaded = True
    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
            loaded.append(ep.name)
        except Exception as e:  # a broken third-party package must not stop the framework
            logger.warning("Plug-in entry point '%s' (%s) failed to load: %r", ep.name, ep.value, e)
    return loaded


def load_plugins(names: Iterable[str]) -> List[ModuleType]:
    """Import installed entry-point plug-ins and then each name in ``names`` (MODEL.PLUGINS)."""
    load_entry_point_plugins()
    return [import_plugin(n) for n in names]

"""The config files that ship with retinadet, found by name, as detectron2's model zoo finds its own:
``get_config_file("shapes/retinanet_R_18_FPN.yaml")`` is the path of that file.

A name is a path under the repository's ``configs/`` folder, e.g. ``"shapes/retinanet_R_18_FPN.yaml"``.
Where the files are:

- in a source checkout (the package imported from the repository, editable install included):
  ``configs/`` of that checkout, the files being edited;
- in an installed copy: ``retinadet/model_zoo/configs/``, the copy of ``configs/`` that ``setup.py``
  puts into the package when it builds it.

``_BASE_`` references inside the files are relative to the file that names them, so the copy works
wherever it lies.
"""
import difflib
import glob
import os
from typing import List, Optional

__all__ = [
    "ConfigNotFoundError",
    "closest_names",
    "config_root",
    "get_config_file",
    "list_config_files",
    "relative_name",
    "resolve_config",
]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# The packaged copy, written by setup.py at build time (git-ignored in a checkout).
PACKAGED_ROOT = os.path.join(_PACKAGE_DIR, "configs")
# configs/ of a source checkout: beside the retinadet package, with setup.py.
_CHECKOUT_DIR = os.path.dirname(os.path.dirname(_PACKAGE_DIR))
CHECKOUT_ROOT = os.path.join(_CHECKOUT_DIR, "configs")
# "configs/shapes/x.yaml", as the repository's documentation spells names, is taken as "shapes/x.yaml".
_CHECKOUT_PREFIX = "configs/"


class ConfigNotFoundError(FileNotFoundError):
    """A config name (or path) that names no file. ``name``: what was asked for; ``looked_in``: the
    folders searched; ``closest``: the closest existing model-zoo names (best first)."""

    def __init__(self, message: str, name: str, looked_in: List[str], closest: List[str]) -> None:
        super().__init__(message)
        self.name = name
        self.looked_in = looked_in
        self.closest = closest

    def __str__(self) -> str:
        return self.args[0]


def _is_checkout() -> bool:
    return os.path.isfile(os.path.join(_CHECKOUT_DIR, "setup.py")) and os.path.isdir(CHECKOUT_ROOT)


def config_root() -> str:
    """The folder the model-zoo names are relative to: ``configs/`` of the source checkout the package
    was imported from, else the packaged copy. FileNotFoundError naming both places when neither
    exists (an installed package built without its configs)."""
    if _is_checkout():
        return CHECKOUT_ROOT
    if os.path.isdir(PACKAGED_ROOT):
        return PACKAGED_ROOT
    raise FileNotFoundError(
        f"retinadet has no config files: neither {PACKAGED_ROOT} (the packaged copy setup.py writes when it "
        f"builds the package) nor {CHECKOUT_ROOT} (a source checkout) exists. Reinstall retinadet from a "
        "source tree that has configs/."
    )


def list_config_files() -> List[str]:
    """Every model-zoo name (``"quick/retinanet_R_18_shapes_tiny.yaml"``, ...), sorted, with "/" as separator."""
    root = config_root()
    files = glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True)
    return sorted(os.path.relpath(f, root).replace(os.sep, "/") for f in files)


def _normalized(name: str) -> str:
    return os.path.normpath(name).replace(os.sep, "/")


def closest_names(name: str, n: int = 3) -> List[str]:
    """Up to ``n`` model-zoo names closest to ``name`` (a name or a path): names with the same file name
    first, then the closest by spelling."""
    candidates = list_config_files()
    wanted = _normalized(name)
    if wanted.startswith(_CHECKOUT_PREFIX):
        wanted = wanted[len(_CHECKOUT_PREFIX):]
    close = difflib.get_close_matches(wanted, candidates, n=n, cutoff=0.0)
    same_file = [c for c in candidates if os.path.basename(c) == os.path.basename(wanted) and c not in close]
    return (same_file + close)[:n]


def _lookup(name: str) -> Optional[str]:
    """The absolute path of model-zoo ``name`` (a ``configs/`` prefix tolerated), or None."""
    if os.path.isabs(name):
        return None
    root = config_root()
    wanted = _normalized(name)
    for candidate in (wanted, wanted[len(_CHECKOUT_PREFIX):] if wanted.startswith(_CHECKOUT_PREFIX) else None):
        if candidate and not candidate.startswith("../"):
            path = os.path.join(root, candidate)
            if os.path.isfile(path):
                return os.path.abspath(path)
    return None


def get_config_file(relative_name: str) -> str:
    """The absolute path of the config ``relative_name`` (e.g. ``"shapes/retinanet_R_18_FPN.yaml"``,
    relative to ``configs/``) in the checkout or the packaged copy (see ``config_root``).

    Raises ConfigNotFoundError naming ``relative_name``, the folder searched and the closest names."""
    path = _lookup(relative_name)
    if path is not None:
        return path
    root = config_root()
    close = closest_names(relative_name, n=1)
    hint = f" Closest existing name: {close[0]!r}." if close else ""
    raise ConfigNotFoundError(f"{relative_name!r} is not a model-zoo config (looked in {root}).{hint}",
                              relative_name, [root], close)


def resolve_config(path_or_name: str, what: str = "config file") -> str:
    """The absolute path of ``path_or_name``: a file that exists (relative to the working directory or
    absolute), else a model-zoo name (``get_config_file``). ``what`` names the argument in the error.

    Raises ConfigNotFoundError naming the value, the working directory and model-zoo folder searched,
    and the closest model-zoo names."""
    if os.path.isfile(path_or_name):
        return os.path.abspath(path_or_name)
    path = _lookup(path_or_name)
    if path is not None:
        return path
    root = config_root()
    places = [root] if os.path.isabs(path_or_name) else [os.getcwd(), root]
    close = closest_names(path_or_name)
    hint = f" Closest existing config files: {', '.join(close)}." if close else ""
    where = f"the working directory {places[0]} and " if len(places) == 2 else ""
    raise ConfigNotFoundError(f"{what} {path_or_name!r} does not exist (looked in {where}the model zoo {root}).{hint}",
                              path_or_name, places, close)


def relative_name(path: str) -> Optional[str]:
    """The model-zoo name of the file at ``path`` (``"shapes/retinanet_R_18_FPN.yaml"``), or None when
    it lies outside the model zoo."""
    root = os.path.realpath(config_root())
    full = os.path.realpath(path)
    if os.path.commonpath([root, full]) != root:
        return None
    return os.path.relpath(full, root).replace(os.sep, "/")

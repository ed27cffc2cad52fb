"""Registers the data sets that ship with retinadet (the embedded shapes set) under DATASETS.ROOT."""
from typing import Any, List

__all__ = ["register_builtin_datasets"]


def register_builtin_datasets(cfg: Any) -> List[str]:
    """Register ``shapes_train`` and ``shapes_val`` under ``cfg.DATASETS.ROOT`` (lazy, idempotent).

    Nothing is generated here: the images are written on the first ``DatasetCatalog.get``.
    Returns the registered names.
    """
    from .shapes import register_shapes_from_config  # imported here so `python -m ...shapes` stays clean

    return register_shapes_from_config(cfg)

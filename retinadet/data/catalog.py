"""Named data sets: DatasetCatalog (name -> function returning list[dict]) and MetadataCatalog.

A data set is a list of dicts, one per image::

    {"file_name": str (path or iopath URI), "height": int, "width": int, "image_id": int,
     "boxes": float32 ndarray (N, 4) xyxy absolute pixels, "labels": int64 ndarray (N,) contiguous
     in [0, num_classes), "iscrowd": bool ndarray (N,), "annotation_ids": int64 ndarray (N,)}

Metadata holds what travels with the data set: ``thing_classes`` (class names by contiguous
label), ``thing_dataset_id_to_contiguous_id`` (original category id -> label), ``json_file`` and
``image_root`` for COCO-format sets, ``evaluator_type``.
"""
import difflib
from typing import Any, Callable, Dict, List

__all__ = ["DatasetCatalog", "MetadataCatalog", "Metadata"]


def _unknown(kind: str, name: str, names: List[str]) -> KeyError:
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return KeyError(f"{kind} '{name}' is not registered.{hint} Registered: {sorted(names)}.")


class _DatasetCatalog:
    """Registry of data set name -> zero-argument function returning the list[dict] described above."""

    def __init__(self) -> None:
        self._functions: Dict[str, Callable[[], List[Dict]]] = {}

    def register(self, name: str, func: Callable[[], List[Dict]]) -> None:
        """Register ``func`` under ``name``; a name registered twice is an error."""
        if not callable(func):
            raise TypeError(f"DatasetCatalog.register('{name}', ...) needs a callable; got {type(func).__name__}.")
        if name in self._functions:
            raise ValueError(f"Data set '{name}' is already registered; remove it first to replace it.")
        self._functions[name] = func

    def get(self, name: str) -> List[Dict]:
        """Call the function registered as ``name`` and return its list of image dicts."""
        if name not in self._functions:
            raise _unknown("Data set", name, list(self._functions))
        return self._functions[name]()

    def list(self) -> List[str]:
        """Registered names, in registration order."""
        return list(self._functions)

    def remove(self, name: str) -> None:
        """Forget ``name`` (and nothing else)."""
        self._functions.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._functions


class Metadata:
    """Attributes of one data set; set once (a second, different value is an error)."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_values", {})

    def __getattr__(self, key: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if key in values:
            return values[key]
        raise AttributeError(
            f"Metadata of data set '{self.name}' has no '{key}'; it has {sorted(values)}."
        )

    def __setattr__(self, key: str, value: Any) -> None:
        values = object.__getattribute__(self, "_values")
        if key in values and values[key] != value:
            raise ValueError(
                f"Metadata '{key}' of data set '{self.name}' is already {values[key]!r}; "
                f"refusing to change it to {value!r}."
            )
        values[key] = value

    def set(self, **kwargs: Any) -> "Metadata":
        """Set several attributes; returns self."""
        for key, value in kwargs.items():
            setattr(self, key, value)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        """The attribute ``key``, or ``default`` when it is not set."""
        return object.__getattribute__(self, "_values").get(key, default)

    def as_dict(self) -> Dict[str, Any]:
        """All attributes, with the name."""
        return {"name": self.name, **object.__getattribute__(self, "_values")}


class _MetadataCatalog:
    """Data set name -> Metadata, created empty on first access."""

    def __init__(self) -> None:
        self._metadata: Dict[str, Metadata] = {}

    def get(self, name: str) -> Metadata:
        """The Metadata of ``name`` (created empty if new)."""
        if name not in self._metadata:
            self._metadata[name] = Metadata(name)
        return self._metadata[name]

    def list(self) -> List[str]:
        """Names that have metadata."""
        return list(self._metadata)

    def remove(self, name: str) -> None:
        """Forget the metadata of ``name``."""
        self._metadata.pop(name, None)


DatasetCatalog = _DatasetCatalog()
MetadataCatalog = _MetadataCatalog()

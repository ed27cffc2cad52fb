"""Errors of the export tools, and the message for an optional package that is not installed."""
import importlib
from types import ModuleType

__all__ = ["ExportError", "MissingPackageError", "first_line", "require"]


class ExportError(RuntimeError):
    """A model that cannot be exported, or an exported file that disagrees with the eager model."""


class MissingPackageError(ImportError):
    """An optional package (onnx, onnxruntime, openvino) that a format or backend needs is missing."""


def require(package: str, purpose: str) -> ModuleType:
    """Import ``package`` (e.g. "onnxruntime"), or raise :class:`MissingPackageError` saying what needs it
    and how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise MissingPackageError(
            f"{purpose} needs the package '{package}', which is not installed ({e}). Install it with "
            f"`pip install {package}`, or every export dependency with `pip install -e \".[export]\"`."
        ) from e


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or "(no message)"."""
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"

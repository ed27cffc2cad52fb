"""Tracing a detection graph with the module each problem came from.

``trace_graph`` runs ``torch.jit.trace`` while hooks keep the stack of modules being run, so that an
exception raised inside a plug-in part names that part, and every TracerWarning (a value the trace
fixes to the example input's, e.g. an ``int()`` of a size) is kept with the module that caused it:
:func:`retinadet.export.exporter.export_model` shows them when the exported graph then disagrees
with the eager model at another image size.
"""
import os
import warnings
from dataclasses import dataclass
from typing import Callable, List, Tuple

import torch
from torch import nn

from .errors import ExportError, first_line

__all__ = ["FixedValue", "trace_graph", "module_stack"]


@dataclass(frozen=True)
class FixedValue:
    """A TracerWarning: ``module`` (qualified name and class) was running when ``message`` was raised
    at ``location`` (file:line)."""

    module: str
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.module} at {self.location}: {self.message}"


class module_stack:
    """Context manager: while active, ``names`` is the stack of "name (Class)" of ``root``'s
    submodules whose forward is running (innermost last)."""

    def __init__(self, root: nn.Module):
        self.names: List[str] = []
        self._qualified = {module: name for name, module in root.named_modules()}
        self._handles: list = []

    def _label(self, module: nn.Module) -> str:
        name = self._qualified.get(module, "")
        return f"{name or '<graph>'} ({type(module).__name__})"

    def __enter__(self) -> "module_stack":
        for module in self._qualified:
            self._handles.append(module.register_forward_pre_hook(self._enter))
            self._handles.append(module.register_forward_hook(self._leave))
        return self

    def _enter(self, module, args):
        self.names.append(self._label(module))

    def _leave(self, module, args, output):
        if self.names:
            self.names.pop()

    def innermost(self) -> str:
        """The module running now (the deepest on the stack), or "<graph>"."""
        return self.names[-1] if self.names else "<graph>"

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def trace_graph(graph: nn.Module, example: torch.Tensor) -> Tuple[torch.jit.ScriptModule, List[FixedValue]]:
    """``torch.jit.trace`` of ``graph`` on ``example``, and the values the trace fixed (TracerWarnings
    with their modules). An exception inside a submodule becomes an :class:`ExportError` naming it."""
    stack = module_stack(graph)
    fixed: List[FixedValue] = []
    original_showwarning: Callable = warnings.showwarning

    def record(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, torch.jit.TracerWarning):
            fixed.append(FixedValue(stack.innermost(), f"{filename}:{lineno}", str(message).splitlines()[0]))
        else:
            original_showwarning(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", torch.jit.TracerWarning)
        warnings.showwarning = record
        try:
            with stack, torch.no_grad():
                try:
                    traced = torch.jit.trace(graph, (example,), check_trace=False)
                except Exception as e:
                    where = stack.innermost()
                    raise ExportError(
                        f"{where} cannot be traced for export: {type(e).__name__}: {first_line(e)}. The exported "
                        "graph records tensor operations only; Python work on tensor values (.item(), .tolist(), "
                        "numpy, data-dependent Python control flow) must become tensor operations."
                    ) from e
        finally:
            warnings.showwarning = original_showwarning
    return traced, _unique(fixed)


def _library_dirs() -> Tuple[str, ...]:
    import torchvision

    return tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (torch, torchvision))


def _unique(values: List[FixedValue]) -> List[FixedValue]:
    """One entry per source line, without torch's and torchvision's own (their checks of static
    properties such as channel counts are traced as constants on purpose)."""
    libraries = _library_dirs()
    seen, out = set(), []
    for v in values:
        path = v.location.rsplit(":", 1)[0]
        internal = os.path.basename(path) == "traced_nms.py"  # its eager stand-in for ONNX's NMS
        if v.location not in seen and not internal and not os.path.abspath(path).startswith(libraries):
            seen.add(v.location)
            out.append(v)
    return out

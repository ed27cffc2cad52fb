"""Arithmetic on sizes that stays in the graph when a model is traced for export.

While ``torch.jit.trace`` (and the ONNX exporter, which traces) runs, ``tensor.shape[i]`` is a 0-dim
tensor that the trace follows; ``int()``, ``min()`` or an ``if`` on it would freeze the traced
graph to the example input's size. These helpers give Python numbers in eager mode and graph
operations while tracing.
"""
from typing import Union

import torch
from torch import Tensor

__all__ = ["is_tracing", "at_most", "size_of"]

Size = Union[int, Tensor]


def is_tracing() -> bool:
    """True while ``torch.jit.trace`` or the ONNX exporter records the running code."""
    return torch.jit.is_tracing()


def at_most(count: Size, limit: int) -> Size:
    """``min(count, limit)``: an int in eager mode, a 0-dim int64 tensor in the graph while tracing
    (``count`` is then usually a traced ``shape[i]``), e.g. the k of a ``topk`` over ``count`` items."""
    if is_tracing() and isinstance(count, Tensor):
        return torch.clamp(count, max=int(limit))
    return min(int(count), int(limit))


def size_of(tensor: Tensor, dim: int) -> Size:
    """``tensor.shape[dim]``: an int in eager mode, a traced 0-dim tensor while tracing."""
    if is_tracing():
        return torch._shape_as_tensor(tensor)[dim]
    return int(tensor.shape[dim])

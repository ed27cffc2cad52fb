"""Distributed helpers that also work in a single process without torch.distributed initialised."""
import os
from typing import Any, List, Optional

import torch
import torch.distributed as dist

__all__ = [
    "all_gather",
    "gather",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "synchronize",
]


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes in the default group; 1 when torch.distributed is not initialised."""
    return dist.get_world_size() if _initialized() else 1


def get_rank() -> int:
    """Rank of this process in the default group; 0 when torch.distributed is not initialised."""
    return dist.get_rank() if _initialized() else 0


def get_local_rank() -> int:
    """Rank of this process on its machine, from the ``LOCAL_RANK`` variable (set by torchrun); else 0."""
    value = os.environ.get("LOCAL_RANK")
    if value is None or value.strip() == "":
        return 0
    try:
        local_rank = int(value)
    except ValueError:
        raise ValueError(
            f"Environment variable LOCAL_RANK={value!r} is not an integer; expected a rank 0, 1, ... "
            "(torchrun sets it) or nothing."
        ) from None
    if local_rank < 0:
        raise ValueError(f"Environment variable LOCAL_RANK={local_rank} is negative; expected 0, 1, ...")
    return local_rank


def is_main_process() -> bool:
    """True on rank 0 (and in a single process)."""
    return get_rank() == 0


def synchronize() -> None:
    """Wait until every process reaches this point; a no-op in a single process."""
    if get_world_size() == 1:
        return
    if dist.get_backend() == dist.Backend.NCCL:
        # Without device_ids NCCL picks GPU rank % GPU count, which need not be this process's device.
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


# (default group, gloo group for objects), rebuilt when the default group is replaced.
_OBJECT_GROUP: List[Any] = [None, None]


def _object_group() -> Optional[Any]:
    """A gloo group over all ranks for pickled objects; None means the default group (already gloo).

    Object collectives on NCCL would stage every pickle in GPU memory and need the right current
    device on every rank; a gloo group keeps them on the CPU. It is created by every rank together,
    inside the first object collective, so all ranks create it in the same order.
    """
    if dist.get_backend() == dist.Backend.GLOO:
        return None
    world = dist.group.WORLD
    if _OBJECT_GROUP[0] is not world:
        _OBJECT_GROUP[:] = [world, dist.new_group(backend="gloo")]
    return _OBJECT_GROUP[1]


def all_gather(obj: Any) -> List[Any]:
    """Every rank's ``obj`` (any picklable object), as a list indexed by rank, on every rank.

    Returns ``[obj]`` when torch.distributed is not initialised or the world has one process.
    """
    world_size = get_world_size()
    if world_size == 1:
        return [obj]
    gathered: List[Any] = [None] * world_size
    dist.all_gather_object(gathered, obj, group=_object_group())
    return gathered


def gather(obj: Any, dst: int = 0) -> List[Any]:
    """Every rank's ``obj`` as a list indexed by rank on rank ``dst``; ``[]`` on the other ranks.

    Returns ``[obj]`` when torch.distributed is not initialised or the world has one process.
    """
    world_size = get_world_size()
    if not 0 <= dst < world_size:
        raise ValueError(f"gather(dst={dst}) needs a rank in [0, {world_size}) (the world size is {world_size}).")
    if world_size == 1:
        return [obj]
    rank = get_rank()
    gathered: Optional[List[Any]] = [None] * world_size if rank == dst else None
    dist.gather_object(obj, gathered, dst=dst, group=_object_group())
    return gathered if gathered is not None else []

"""Start a function in one process or in a torch.distributed process group (spawned, or under torchrun)."""
import datetime
import logging
import os
import socket
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from retinadet.utils import comm

__all__ = ["find_free_port", "launch", "launched_by_torchrun"]

logger = logging.getLogger(__name__)
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)


def find_free_port() -> int:
    """A TCP port on this machine that is free right now (for ``--dist-url auto``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher using its variables) started this process."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def _backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def _share_cpu_threads(local_world_size: int) -> None:
    # Processes on one machine share its cores; without this each would start one thread per core.
    if not torch.cuda.is_available() and local_world_size > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world_size))


def _run_in_group(main_func: Callable, args: Sequence[Any]) -> Any:
    try:
        comm.synchronize()
        return main_func(*args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _distributed_worker(local_rank: int, main_func: Callable, world_size: int, num_per_machine: int,
                        machine_rank: int, dist_url: str, args: Sequence[Any], timeout: datetime.timedelta) -> None:
    global_rank = machine_rank * num_per_machine + local_rank
    os.environ["LOCAL_RANK"] = str(local_rank)
    os.environ["RANK"] = str(global_rank)
    os.environ["WORLD_SIZE"] = str(world_size)
    backend = _backend()
    if backend == "nccl":
        if num_per_machine > torch.cuda.device_count():
            raise RuntimeError(f"--num-gpus {num_per_machine} but this machine has {torch.cuda.device_count()} GPUs.")
        torch.cuda.set_device(local_rank)
    _share_cpu_threads(num_per_machine)
    try:
        dist.init_process_group(backend, init_method=dist_url, world_size=world_size, rank=global_rank, timeout=timeout)
    except Exception as e:
        raise RuntimeError(f"Process group initialisation failed at {dist_url} (rank {global_rank} of {world_size}, "
                           f"{backend}): {e}") from e
    _run_in_group(main_func, args)


def launch(main_func: Callable, num_gpus_per_machine: int, num_machines: int = 1, machine_rank: int = 0,
           dist_url: Optional[str] = None, args: Sequence[Any] = (),
           timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> Any:
    """Run ``main_func(*args)`` once per process of the job.

    - Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT set): joins that group (env://).
    - ``num_machines * num_gpus_per_machine > 1``: spawns ``num_gpus_per_machine`` processes here,
      ranks ``machine_rank * num_gpus_per_machine + i``. On a machine without GPUs the processes use
      the gloo backend on the CPU (``--num-gpus`` then counts CPU processes); with GPUs, NCCL and one GPU each.
    - Otherwise: calls ``main_func(*args)`` in this process.

    Args:
        dist_url: "tcp://host:port" of machine 0, or "auto" (a free local port; one machine only).

    Returns what ``main_func`` returns in a single process (or in this process under torchrun); None
    after spawning.
    """
    if launched_by_torchrun():
        if int(os.environ["WORLD_SIZE"]) == 1:
            return main_func(*args)
        backend = _backend()
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        _share_cpu_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        dist.init_process_group(backend, init_method="env://", timeout=timeout)
        return _run_in_group(main_func, args)
    if num_gpus_per_machine < 1 or num_machines < 1 or not 0 <= machine_rank < num_machines:
        raise ValueError(
            f"--num-gpus {num_gpus_per_machine}, --num-machines {num_machines}, --machine-rank {machine_rank}: "
            "need at least one process per machine, one machine, and 0 <= machine rank < machines."
        )
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:
        return main_func(*args)
    if not dist_url or dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on one machine; give tcp://<machine 0 address>:<port>.")
        dist_url = f"tcp://127.0.0.1:{find_free_port()}"
    logger.info("Launching %d processes (%d machines) at %s", world_size, num_machines, dist_url)
    mp.start_processes(
        _distributed_worker, nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False, start_method="spawn",
    )
    return None

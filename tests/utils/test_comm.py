"""Tests of retinadet.utils.comm in one process (no torch.distributed) and in two gloo processes."""
import json
import os

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from retinadet.utils import comm


def test_single_process_without_torch_distributed(monkeypatch):
    assert not dist.is_initialized()
    assert comm.get_world_size() == 1 and comm.get_rank() == 0 and comm.is_main_process()
    comm.synchronize()  # a no-op, must not raise
    payload = {"boxes": [[0.0, 1.0, 2.0, 3.0]], "name": "x"}
    assert comm.all_gather(payload) == [payload]
    assert comm.gather(payload) == [payload]
    with pytest.raises(ValueError, match=r"gather\(dst=1\) needs a rank in \[0, 1\)"):
        comm.gather(payload, dst=1)


def test_local_rank_from_environment(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert comm.get_local_rank() == 0
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert comm.get_local_rank() == 3
    monkeypatch.setenv("LOCAL_RANK", "gpu1")
    with pytest.raises(ValueError, match="LOCAL_RANK='gpu1' is not an integer"):
        comm.get_local_rank()
    monkeypatch.setenv("LOCAL_RANK", "-1")
    with pytest.raises(ValueError, match="LOCAL_RANK=-1 is negative"):
        comm.get_local_rank()


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        # Objects of different sizes and types per rank: pickled, not tensors.
        payload = {"rank": rank, "items": list(range(rank + 2)), "name": f"r{rank}"}
        record = {
            "world_size": comm.get_world_size(),
            "rank": comm.get_rank(),
            "is_main": comm.is_main_process(),
            "all_gather": comm.all_gather(payload),
            "gather_to_0": comm.gather(payload),
            "gather_to_1": comm.gather(payload, dst=1),
        }
        comm.synchronize()
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(record, f)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    both = [{"rank": 0, "items": [0, 1], "name": "r0"}, {"rank": 1, "items": [0, 1, 2], "name": "r1"}]
    for rank, record in enumerate(records):
        assert record["world_size"] == 2 and record["rank"] == rank and record["is_main"] == (rank == 0)
        assert record["all_gather"] == both
        # gather: the whole list on the destination rank, [] elsewhere.
        assert record["gather_to_0"] == (both if rank == 0 else [])
        assert record["gather_to_1"] == (both if rank == 1 else [])

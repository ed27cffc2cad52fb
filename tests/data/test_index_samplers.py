"""Tests for retinadet.data.index_samplers: seeded sharded streams, resumable state, exactly-once inference."""
import itertools

import numpy as np
import pytest

from retinadet.data.index_samplers import InferenceSampler, TrainingBatchSampler, TrainingSampler


def take(iterable, n):
    return list(itertools.islice(iterable, n))


def test_training_stream_is_seeded_permutation_per_epoch():
    a = take(TrainingSampler(7, seed=3, rank=0, world_size=1), 21)
    assert a == take(TrainingSampler(7, seed=3, rank=0, world_size=1), 21)
    assert a != take(TrainingSampler(7, seed=4, rank=0, world_size=1), 21)
    epochs = [a[0:7], a[7:14], a[14:21]]
    assert all(sorted(e) == list(range(7)) for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled between epochs
    assert take(TrainingSampler(3, shuffle=False, rank=0, world_size=1), 7) == [0, 1, 2, 0, 1, 2, 0]


def test_training_ranks_interleave_the_shared_stream():
    whole = take(TrainingSampler(7, seed=1, rank=0, world_size=1), 30)
    shards = [take(TrainingSampler(7, seed=1, rank=r, world_size=3), 10) for r in range(3)]
    # Rank r takes positions r, r + 3, r + 6, ...
    for r in range(3):
        assert shards[r] == whole[r::3]
    # Each epoch of 7 is covered exactly once by the ranks together (positions 0..6).
    assert sorted(shards[0][:3] + shards[1][:2] + shards[2][:2]) == list(range(7))


def test_training_default_rank_comes_from_comm():
    sampler = TrainingSampler(5, seed=0)
    assert (sampler.rank, sampler.world_size) == (0, 1)


def test_training_state_resume_same_rank():
    a = TrainingSampler(7, seed=2, rank=1, world_size=2)
    stream = iter(a)
    take(stream, 5)  # positions 1, 3, 5, 7, 9 -> next is 11 = epoch 1, offset 4
    state = a.state_dict()
    assert (state["epoch"], state["offset"]) == (1, 4)
    expected = take(stream, 8)
    b = TrainingSampler(7, seed=2, rank=1, world_size=2)
    b.load_state_dict(state)
    assert take(iter(b), 8) == expected


def test_training_state_from_rank0_drives_every_rank():
    # Rank 0's checkpoint after 4 samples per rank (positions 0..7 consumed) is loaded by all ranks.
    world = 2
    rank0 = TrainingSampler(9, seed=5, rank=0, world_size=world)
    take(iter(rank0), 4)
    state = rank0.state_dict()
    assert (state["epoch"], state["offset"]) == (0, 8)
    whole = take(TrainingSampler(9, seed=5, rank=0, world_size=1), 30)
    for r in range(world):
        resumed = TrainingSampler(9, seed=5, rank=r, world_size=world)
        resumed.load_state_dict(state)
        assert take(iter(resumed), 5) == whole[8 + r : 18 : world]
    # Another world size continues the same shared stream from position 8.
    for r in range(3):
        resumed = TrainingSampler(9, seed=5, rank=r, world_size=3)
        resumed.load_state_dict(state)
        assert take(iter(resumed), 4) == whole[8 + r : 20 : 3]


def test_training_state_mismatch_and_bad_arguments():
    state = TrainingSampler(7, seed=2, rank=0, world_size=1).state_dict()
    with pytest.raises(ValueError, match=r"seed=2.*has 3"):
        TrainingSampler(7, seed=3, rank=0, world_size=1).load_state_dict(state)
    with pytest.raises(ValueError, match=r"size=7.*has 8"):
        TrainingSampler(8, seed=2, rank=0, world_size=1).load_state_dict(state)
    with pytest.raises(ValueError, match=r"rank 2, world_size 2"):
        TrainingSampler(7, rank=2, world_size=2)
    with pytest.raises(ValueError, match=r"size 0"):
        TrainingSampler(0, rank=0, world_size=1)
    with pytest.raises(ValueError, match=r"seed must be >= 0"):
        TrainingSampler(3, seed=-1, rank=0, world_size=1)


@pytest.mark.parametrize(
    "size, world, expected",
    [
        (10, 3, [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]),  # 10 = 4 + 3 + 3
        (2, 3, [[0], [1], []]),
        (6, 2, [[0, 1, 2], [3, 4, 5]]),
        (0, 2, [[], []]),
    ],
)
def test_inference_sampler_contiguous_exactly_once(size, world, expected):
    shards = [list(InferenceSampler(size, rank=r, world_size=world)) for r in range(world)]
    assert shards == expected
    assert [len(InferenceSampler(size, rank=r, world_size=world)) for r in range(world)] == [len(s) for s in expected]
    assert sum(shards, []) == list(range(size))


def test_batch_sampler_groups_and_order():
    # Indices 0-4 landscape (group 0), 5-9 portrait (group 1); no shuffling, so the stream is 0..9, 0..9, ...
    group_ids = [0] * 5 + [1] * 5
    sampler = TrainingSampler(10, shuffle=False, rank=0, world_size=1)
    batches = take(iter(TrainingBatchSampler(sampler, 2, group_ids=group_ids)), 6)
    # Keys are (index, epoch); index 4 waits for index 0 of epoch 1, index 9 for index 5 of epoch 1.
    assert batches == [
        [(0, 0), (1, 0)],
        [(2, 0), (3, 0)],
        [(5, 0), (6, 0)],
        [(7, 0), (8, 0)],
        [(4, 0), (0, 1)],
        [(1, 1), (2, 1)],
    ]
    plain = take(iter(TrainingBatchSampler(TrainingSampler(3, shuffle=False, rank=0, world_size=1), 2)), 2)
    assert plain == [[(0, 0), (1, 0)], [(2, 0), (0, 1)]]


def test_batch_sampler_state_keeps_pending_samples():
    rng = np.random.default_rng(0)
    group_ids = rng.integers(0, 2, 11)

    def make():
        return TrainingBatchSampler(TrainingSampler(11, seed=9, rank=0, world_size=1), 3, group_ids=group_ids)

    reference = take(iter(make()), 12)
    first = make()
    stream = iter(first)
    take(stream, 5)
    state = first.state_dict()
    assert len(state["pending"]) == 1  # this seed leaves one sample waiting in its group
    resumed = make()
    resumed.load_state_dict(state)
    assert take(iter(resumed), 7) == reference[5:]
    for batch in reference:
        assert len({int(group_ids[i]) for i, _ in batch}) == 1


def test_batch_sampler_state_from_other_rank_translates_pending():
    group_ids = [0, 1, 1, 1, 0, 1, 0, 1]

    def make(rank):
        return TrainingBatchSampler(TrainingSampler(8, shuffle=False, rank=rank, world_size=2), 2, group_ids=group_ids)

    rank0 = make(0)
    # Rank 0 takes positions 0, 2, 4 (indices 0, 2, 4; groups 0, 1, 0): batch [0, 4], index 2 waits.
    assert take(iter(rank0), 1) == [[(0, 0), (4, 0)]]
    state = rank0.state_dict()
    assert state["pending"] == [2] and (state["sampler"]["epoch"], state["sampler"]["offset"]) == (0, 6)
    rank1 = make(1)
    rank1.load_state_dict(state)
    # Rank 1's counterpart of the waiting position 2 is position 3 (index 3, group 1); it continues
    # at positions 7, 9, 11 = indices 7, 1 (epoch 1), 3 (epoch 1), all group 1.
    assert take(iter(rank1), 2) == [[(3, 0), (7, 0)], [(1, 1), (3, 1)]]


def test_batch_sampler_records_states_when_asked():
    sampler = TrainingBatchSampler(TrainingSampler(4, shuffle=False, rank=0, world_size=1), 2, record_states=True)
    take(iter(sampler), 3)
    # After batch k (2 samples each) the next position is 2k.
    assert [s["sampler"]["epoch"] * 4 + s["sampler"]["offset"] for s in sampler.produced_states] == [2, 4, 6]
    assert not TrainingBatchSampler(TrainingSampler(4, rank=0, world_size=1), 2).produced_states

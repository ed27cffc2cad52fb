"""Samplers of data-set indices (torch.utils.data samplers): an endless, seeded, rank-sharded training stream
(resumable) and exactly-once inference shards. (Samplers of training examples, SAMPLER_REGISTRY, are in
retinadet.modeling.samplers.)"""
import collections
from typing import Any, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from torch.utils.data import Sampler

__all__ = ["InferenceSampler", "TrainingBatchSampler", "TrainingSampler"]

# First SeedSequence word after the seed, so permutation and augmentation streams never coincide.
_PERMUTATION_STREAM = 0


def _rank_and_world_size(rank: Optional[int], world_size: Optional[int]) -> Tuple[int, int]:
    """Fill in missing values from the running process group; check 0 <= rank < world_size."""
    if rank is None or world_size is None:
        # Imported here so the samplers stay usable without the distributed helpers loaded.
        from retinadet.utils import comm

        rank = comm.get_rank() if rank is None else rank
        world_size = comm.get_world_size() if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"Sampler needs 0 <= rank < world_size; got rank {rank}, world_size {world_size}.")
    return int(rank), int(world_size)


class TrainingSampler(Sampler[int]):
    """Endless stream of data set indices, split over ranks.

    All ranks share one global stream: the concatenation of one permutation of ``range(size)``
    per epoch (``range(size)`` itself when ``shuffle`` is False), the permutation of epoch e
    drawn from (``seed``, e) alone. Rank r takes global positions r, r + world_size,
    r + 2 * world_size, ... so the ranks together consume the stream in order, each sample once
    per epoch.

    The sampler remembers where it is; ``state_dict()`` gives the epoch and offset (within the
    epoch's permutation) of the next position this rank will take, and ``load_state_dict()``
    continues from there, also on another rank or world size (the state then marks how far the
    shared stream was consumed).

    Args:
        size: number of images in the data set (> 0).
        shuffle: shuffle every epoch, or go through the data in order.
        seed: >= 0; every rank must use the same value.
        rank, world_size: this process's place; default: from retinadet.utils.comm.
    """

    def __init__(
        self,
        size: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ) -> None:
        if size <= 0:
            raise ValueError(f"TrainingSampler needs a non-empty data set; got size {size}.")
        if seed < 0:
            raise ValueError(f"TrainingSampler seed must be >= 0 (the same on every rank); got {seed}.")
        self.size = int(size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.rank, self.world_size = _rank_and_world_size(rank, world_size)
        self._position = self.rank  # next global stream position this rank takes
        # Two epochs cached: around an epoch boundary both are in use.
        self._permutations: Dict[int, np.ndarray] = {}

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            if self.shuffle:
                rng = np.random.default_rng([self.seed, _PERMUTATION_STREAM, epoch])
                permutation = rng.permutation(self.size)
            else:
                permutation = np.arange(self.size)
            self._permutations = {e: p for e, p in self._permutations.items() if e == epoch - 1}
            self._permutations[epoch] = permutation
        return self._permutations[epoch]

    def sample_at(self, position: int) -> Tuple[int, int]:
        """(data set index, epoch) at global stream ``position``."""
        epoch, offset = divmod(position, self.size)
        return int(self._permutation(epoch)[offset]), epoch

    def iter_positions(self) -> Iterator[int]:
        """This rank's global stream positions, from the current one on; advances the state."""
        while True:
            position = self._position
            self._position += self.world_size
            yield position

    def __iter__(self) -> Iterator[int]:
        for position in self.iter_positions():
            yield self.sample_at(position)[0]

    def state_dict(self) -> Dict[str, Any]:
        """Where this rank's stream stands: {"epoch", "offset"} of its next sample, plus what
        ``load_state_dict`` checks (size, shuffle, seed) and translates (rank, world_size)."""
        epoch, offset = divmod(self._position, self.size)
        return {
            "epoch": epoch,
            "offset": offset,
            "rank": self.rank,
            "world_size": self.world_size,
            "size": self.size,
            "shuffle": self.shuffle,
            "seed": self.seed,
        }

    def translate_position(self, position: int, state: Dict[str, Any]) -> int:
        """A position of the stream of rank ``state["rank"]`` -> the matching one of this rank."""
        return position - int(state["rank"]) + self.rank

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue the stream described by ``state`` (from ``state_dict()``, possibly of another
        rank: this rank then takes its own share from the point that rank had reached)."""
        for key in ("size", "shuffle", "seed"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"TrainingSampler state has {key}={state[key]!r} but this sampler has {getattr(self, key)!r}; "
                    "a stream position only means something for the same data set, shuffle and seed. "
                    "Build the loader with the saved settings or do not load the data loader state."
                )
        position = int(state["epoch"]) * self.size + int(state["offset"])
        self._position = self.translate_position(position, state)


class TrainingBatchSampler:
    """Batches of ``(index, epoch)`` keys from a TrainingSampler, optionally one group per batch.

    With ``group_ids`` (one small int per data set index, e.g. 0 landscape / 1 portrait) each
    group collects samples in stream order and a batch is emitted when a group has
    ``batch_size`` of them, so a batch never mixes groups. Without, consecutive samples form
    the batches. The epoch travels with each index so the data set can seed that sample's
    augmentation.

    ``state_dict()`` is the sampler state plus the samples still waiting in the groups. With
    ``record_states`` every emitted batch also appends the state right after it to
    ``produced_states`` (oldest first), so a loader that prefetches can report the state of
    the batches actually consumed; that loader must pop one state per batch it delivers.
    """

    def __init__(
        self,
        sampler: TrainingSampler,
        batch_size: int,
        group_ids: Optional[Sequence[int]] = None,
        record_states: bool = False,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"TrainingBatchSampler batch_size must be positive; got {batch_size}.")
        if group_ids is not None and len(group_ids) != sampler.size:
            raise ValueError(f"group_ids has {len(group_ids)} entries but the sampler covers {sampler.size} images.")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.group_ids = None if group_ids is None else np.asarray(group_ids, dtype=np.int64)
        self.record_states = record_states
        # (global position, group) taken from the sampler but not yet emitted, in stream order.
        self._pending: List[Tuple[int, int]] = []
        self.produced_states: Deque[Dict[str, Any]] = collections.deque()

    def _with_group(self, position: int) -> Tuple[int, int]:
        if self.group_ids is None:
            return position, 0
        return position, int(self.group_ids[self.sampler.sample_at(position)[0]])

    def _take_full_group(self, group: int) -> Optional[List[Tuple[int, int]]]:
        """Emit the first ``batch_size`` waiting samples of ``group`` if it has that many."""
        members = [p for p, g in self._pending if g == group]
        if len(members) < self.batch_size:
            return None
        taken = set(members[: self.batch_size])
        self._pending = [item for item in self._pending if item[0] not in taken]
        if self.record_states:
            self.produced_states.append(self.state_dict())
        return [self.sampler.sample_at(p) for p in members[: self.batch_size]]

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        # Samples restored by load_state_dict may already fill a group.
        for group in sorted({g for _, g in self._pending}):
            while (batch := self._take_full_group(group)) is not None:
                yield batch
        for position in self.sampler.iter_positions():
            item = self._with_group(position)
            self._pending.append(item)
            batch = self._take_full_group(item[1])
            if batch is not None:
                yield batch

    def state_dict(self) -> Dict[str, Any]:
        """{"sampler": TrainingSampler state, "pending": global positions waiting in the groups}."""
        return {"sampler": self.sampler.state_dict(), "pending": [p for p, _ in self._pending]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue from ``state`` (see TrainingSampler.load_state_dict for other ranks); forgets
        states produced but not consumed."""
        self.sampler.load_state_dict(state["sampler"])
        translated = [self.sampler.translate_position(p, state["sampler"]) for p in state["pending"]]
        self._pending = [self._with_group(p) for p in translated]
        self.produced_states.clear()


class InferenceSampler(Sampler[int]):
    """Every index of ``range(size)`` exactly once over all ranks, in order.

    Rank r gets one contiguous shard; shard sizes differ by at most one (the first
    ``size % world_size`` ranks get one more), so gathering the ranks' results in rank order
    restores the data set order.
    """

    def __init__(self, size: int, rank: Optional[int] = None, world_size: Optional[int] = None) -> None:
        if size < 0:
            raise ValueError(f"InferenceSampler size must be >= 0; got {size}.")
        self.size = int(size)
        self.rank, self.world_size = _rank_and_world_size(rank, world_size)
        base, extra = divmod(self.size, self.world_size)
        self.begin = self.rank * base + min(self.rank, extra)
        self.end = self.begin + base + (1 if self.rank < extra else 0)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.begin, self.end))

    def __len__(self) -> int:
        return self.end - self.begin

"""Data loaders: an endless, seeded, aspect-grouped training loader and an exactly-once test loader."""
import copy
import logging
import pickle
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch.utils.data

from .catalog import DatasetCatalog
from .mapper import DatasetMapper
from .index_samplers import InferenceSampler, TrainingBatchSampler, TrainingSampler

__all__ = [
    "MappedDataset",
    "TrainDataLoader",
    "aspect_ratio_group_ids",
    "build_detection_test_loader",
    "build_detection_train_loader",
    "sample_rng",
]

logger = logging.getLogger(__name__)

# Training order and augmentation use cfg.SEED when it is >= 0, else this fixed value, so runs
# are reproducible and all ranks agree on the shared sample stream without communicating.
DEFAULT_DATA_SEED = 0
# SeedSequence word after the seed (the samplers use 0 for their permutations).
_AUGMENTATION_STREAM = 1


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The augmentation generator of data set ``index`` in ``epoch``: a function of these three
    numbers only, so it does not depend on worker count, rank or loading order."""
    return np.random.default_rng([seed, _AUGMENTATION_STREAM, epoch, index])


class _SerializedList:
    """A list of dicts kept as one pickled byte buffer.

    Worker processes share the parent's memory copy-on-write; touching millions of small
    Python objects (reference counts) would copy their pages into every worker. One numpy
    buffer is never written, so it stays shared.
    """

    def __init__(self, items: Sequence[Dict]) -> None:
        blobs = [np.frombuffer(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8) for item in items]
        self._ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
        self._buffer = np.concatenate(blobs) if blobs else np.zeros(0, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> Dict:
        begin = 0 if index == 0 else int(self._ends[index - 1])
        return pickle.loads(memoryview(self._buffer[begin : int(self._ends[index])]))


class MappedDataset(torch.utils.data.Dataset):
    """Data set dicts passed through a mapper.

    Keys are an index (test: ``mapper(dataset_dict)``) or an ``(index, epoch)`` pair (training:
    ``mapper(dataset_dict, rng=sample_rng(seed, epoch, index))``).
    """

    def __init__(self, dataset_dicts: Sequence[Dict], mapper: Callable, seed: Optional[int] = None) -> None:
        self._dicts = _SerializedList(dataset_dicts)
        self.mapper = mapper
        self.seed = seed

    def __len__(self) -> int:
        return len(self._dicts)

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        if isinstance(key, tuple):
            index, epoch = key
            if self.seed is None:
                raise ValueError("MappedDataset got an (index, epoch) key but has no seed to derive augmentation from.")
            return self.mapper(self._dicts[index], rng=sample_rng(self.seed, epoch, index))
        return self.mapper(self._dicts[key])


def _trivial_collate(batch: List[Dict]) -> List[Dict]:
    # Images differ in size; the model pads them itself (ImageList), so a batch stays a list.
    return batch


def aspect_ratio_group_ids(dataset_dicts: Sequence[Dict]) -> np.ndarray:
    """int64 (N,): 0 for landscape images (width > height), 1 for the others, from the dicts'
    declared sizes (resizing keeps the orientation, so the mapped images group the same)."""
    group_ids = np.empty(len(dataset_dicts), dtype=np.int64)
    for i, d in enumerate(dataset_dicts):
        if "height" not in d or "width" not in d:
            raise ValueError(
                f"Image '{d.get('file_name')}' (image_id {d.get('image_id')}) has no height/width; aspect ratio "
                "grouping needs them. Add them to the data set or set DATALOADER.ASPECT_RATIO_GROUPING False."
            )
        group_ids[i] = 0 if d["width"] > d["height"] else 1
    return group_ids


class TrainDataLoader(torch.utils.data.DataLoader):
    """A DataLoader over an endless TrainingBatchSampler that knows which batches were consumed.

    Workers prefetch, so the sampler runs ahead of the training loop; ``state_dict()`` is the
    sampler state right after the last batch this loader delivered, and a loader given it by
    ``load_state_dict()`` (before iterating) delivers the batches that would have come next.
    """

    def __init__(self, dataset: MappedDataset, batch_sampler: TrainingBatchSampler, seed: int = 0,
                 **kwargs: Any) -> None:
        batch_sampler.record_states = True
        # Its own generator: starting an iterator draws the workers' base seed from it, not from the
        # global torch generator, whose state a checkpoint restores; a resumed run (which starts a new
        # iterator) would otherwise draw different random samples (RPN / ROI sampling) from then on.
        kwargs.setdefault("generator", torch.Generator().manual_seed(seed))
        super().__init__(dataset, batch_sampler=batch_sampler, **kwargs)
        self._consumed_state = batch_sampler.state_dict()

    def __iter__(self) -> Iterator[List[Dict]]:
        # A new iterator starts after the last delivered batch, not after what was prefetched.
        self.batch_sampler.load_state_dict(self._consumed_state)
        for batch in super().__iter__():
            # Batches arrive in sampling order (in_order), so the oldest recorded state is this batch's.
            self._consumed_state = self.batch_sampler.produced_states.popleft()
            yield batch

    def state_dict(self) -> Dict[str, Any]:
        """The position after the last delivered batch (see TrainingBatchSampler.state_dict)."""
        return copy.deepcopy(self._consumed_state)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue from ``state`` (another rank's state is translated to this rank)."""
        self.batch_sampler.load_state_dict(state)
        self._consumed_state = self.batch_sampler.state_dict()


def _training_batch_size(total: int, world_size: int) -> int:
    if total <= 0 or total % world_size != 0:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH ({total}) must be a positive multiple of the number of processes "
            f"({world_size}); each process loads SOLVER.IMS_PER_BATCH / world size images."
        )
    return total // world_size


def _num_workers(cfg: Any) -> int:
    """DATALOADER.NUM_WORKERS, checked: ValueError naming the key unless it is an integer >= 0."""
    workers = cfg.DATALOADER.NUM_WORKERS
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"DATALOADER.NUM_WORKERS is {workers!r}; expected 0 (load in the training process) or a "
                         "positive number of loader processes.")
    return workers


def build_detection_train_loader(
    cfg: Any, mapper: Optional[Callable] = None, dataset: Optional[Sequence[Dict]] = None
) -> TrainDataLoader:
    """The endless training loader of this process.

    Args:
        cfg: reads DATASETS.TRAIN and DATALOADER.FILTER_EMPTY_ANNOTATIONS (when ``dataset`` is
            None), SOLVER.IMS_PER_BATCH, DATALOADER.NUM_WORKERS, DATALOADER.ASPECT_RATIO_GROUPING,
            SEED (>= 0: seed of order and augmentation; < 0: the fixed DEFAULT_DATA_SEED) and, for
            the default mapper, INPUT.*.
        mapper: callable(dataset_dict, rng=numpy Generator) -> model input dict; default
            ``DatasetMapper(**DatasetMapper.from_config(cfg, is_train=True))``.
        dataset: data set dicts; default: ``get_detection_dataset_dicts(cfg.DATASETS.TRAIN, ...)``.

    Returns:
        an iterable of batches, each a list of SOLVER.IMS_PER_BATCH / world size model input
        dicts; with aspect ratio grouping a batch holds only landscape or only portrait images.
    """
    from retinadet.utils import comm

    num_workers = _num_workers(cfg)

    if dataset is None:
        # Imported here: coco.py pulls in pycocotools, which the other paths do not need.
        from .builtin import register_builtin_datasets
        from .coco import get_detection_dataset_dicts

        register_builtin_datasets(cfg)
        dataset = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
        )
    if len(dataset) == 0:
        raise ValueError(f"The training data set {tuple(cfg.DATASETS.TRAIN)} has no images (after filtering).")
    world_size = comm.get_world_size()
    batch_size = _training_batch_size(cfg.SOLVER.IMS_PER_BATCH, world_size)
    if mapper is None:
        mapper = DatasetMapper(**DatasetMapper.from_config(cfg, is_train=True))
    seed = cfg.SEED if cfg.SEED >= 0 else DEFAULT_DATA_SEED
    sampler = TrainingSampler(len(dataset), shuffle=True, seed=seed, rank=comm.get_rank(), world_size=world_size)
    group_ids = aspect_ratio_group_ids(dataset) if cfg.DATALOADER.ASPECT_RATIO_GROUPING else None
    logger.info(
        "Training loader: %d images, %d per batch per process, %d workers, seed %d, aspect grouping %s.",
        len(dataset), batch_size, num_workers, seed, group_ids is not None,
    )
    return TrainDataLoader(
        MappedDataset(dataset, mapper, seed=seed),
        TrainingBatchSampler(sampler, batch_size, group_ids=group_ids),
        seed=seed,
        num_workers=num_workers,
        collate_fn=_trivial_collate,
    )


def build_detection_test_loader(
    cfg: Any, dataset_name: str, mapper: Optional[Callable] = None, dataset: Optional[Sequence[Dict]] = None
) -> torch.utils.data.DataLoader:
    """This process's share of ``dataset_name`` (InferenceSampler), in order, each image once.

    Args:
        cfg: reads TEST.IMS_PER_BATCH, DATALOADER.NUM_WORKERS and, for the default mapper, INPUT.*.
        dataset_name: registered name; its dicts come from DatasetCatalog unless ``dataset`` is given.
        mapper: callable(dataset_dict) -> model input dict; default
            ``DatasetMapper(**DatasetMapper.from_config(cfg, is_train=False, dataset_name=...))``.
        dataset: data set dicts to use instead of the catalog's.

    Returns:
        a DataLoader of batches, each a list of up to TEST.IMS_PER_BATCH model input dicts.
    """
    num_workers = _num_workers(cfg)
    if dataset is None:
        from .builtin import register_builtin_datasets

        register_builtin_datasets(cfg)
        dataset = DatasetCatalog.get(dataset_name)
    if len(dataset) == 0:
        raise ValueError(f"The evaluation data set '{dataset_name}' has no images.")
    if mapper is None:
        mapper = DatasetMapper(**DatasetMapper.from_config(cfg, is_train=False, dataset_name=dataset_name))
    if cfg.TEST.IMS_PER_BATCH <= 0:
        raise ValueError(f"TEST.IMS_PER_BATCH must be positive; got {cfg.TEST.IMS_PER_BATCH}.")
    batch_sampler = torch.utils.data.BatchSampler(
        InferenceSampler(len(dataset)), cfg.TEST.IMS_PER_BATCH, drop_last=False
    )
    return torch.utils.data.DataLoader(
        MappedDataset(dataset, mapper),
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        collate_fn=_trivial_collate,
    )

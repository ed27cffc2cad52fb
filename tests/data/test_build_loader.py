"""Tests for retinadet.data.build: training and test loaders on a tiny hand-made data set."""
import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from retinadet.config import get_cfg
from retinadet.data.build import (
    build_detection_test_loader,
    build_detection_train_loader,
    sample_rng,
)
from retinadet.data.catalog import DatasetCatalog
from retinadet.data.mapper import DatasetMapper
from retinadet.utils import comm

# (height, width) of the images: four landscape, three portrait.
SIZES = [(32, 48), (32, 40), (30, 44), (32, 64), (48, 32), (40, 32), (44, 30)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    records = []
    for i, (h, w) in enumerate(SIZES):
        path = root / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        records.append({
            "file_name": str(path),
            "height": h,
            "width": w,
            "image_id": i,
            "boxes": np.array([[2, 3, w - 5, h - 4]], dtype=np.float32),
            "labels": np.array([i % 3], dtype=np.int64),
            "iscrowd": np.array([False]),
            "annotation_ids": np.array([100 + i], dtype=np.int64),
        })
    return records


def make_cfg(workers=0, ims_per_batch=2, grouping=True, seed=7):
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = [20, 24, 28]
    cfg.INPUT.MAX_SIZE_TRAIN = 64
    cfg.INPUT.MIN_SIZE_TEST = 16
    cfg.INPUT.MAX_SIZE_TEST = 64
    cfg.SOLVER.IMS_PER_BATCH = ims_per_batch
    cfg.TEST.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.DATALOADER.ASPECT_RATIO_GROUPING = grouping
    cfg.SEED = seed
    return cfg


def take(loader, n):
    return list(itertools.islice(loader, n))


def summary(batches):
    """What must match between two runs: names, pixel sums, sizes and boxes of every sample."""
    return [
        [(d["file_name"], tuple(d["image"].shape), int(d["image"].sum()), d["boxes"].tolist()) for d in batch]
        for batch in batches
    ]


def test_train_batches_grouped_by_aspect(dataset):
    batches = take(build_detection_train_loader(make_cfg(), dataset=dataset), 10)
    assert all(isinstance(b, list) and len(b) == 2 for b in batches)
    for batch in batches:
        landscape = {d["width"] > d["height"] for d in batch}
        assert len(landscape) == 1, [d["file_name"] for d in batch]
        # Resizing keeps the orientation: the tensors agree with the original sizes.
        assert {d["image"].shape[2] > d["image"].shape[1] for d in batch} == landscape
        for d in batch:
            assert d["image"].dtype == torch.uint8 and min(d["image"].shape[1:]) in (20, 24, 28)
    # 20 samples = about three epochs of 7: every image appears.
    assert {d["image_id"] for b in batches for d in b} == set(range(len(SIZES)))


def test_train_without_grouping_follows_the_stream(dataset):
    batches = take(build_detection_train_loader(make_cfg(grouping=False, ims_per_batch=3), dataset=dataset), 7)
    ids = [d["image_id"] for b in batches for d in b]
    assert all(len(b) == 3 for b in batches)
    # Consecutive stream samples: each group of 7 is one epoch, a permutation of all images.
    assert sorted(ids[:7]) == list(range(7)) and sorted(ids[7:14]) == list(range(7))


def test_train_augmentation_seeded_per_sample(dataset):
    cfg = make_cfg(grouping=False)
    (batch,) = take(build_detection_train_loader(cfg, dataset=dataset), 1)
    mapper = DatasetMapper(**DatasetMapper.from_config(cfg, is_train=True))
    for d in batch:
        # First epoch: the sample's generator depends on (seed 7, epoch 0, index) only.
        expected = mapper(dataset[d["image_id"]], rng=sample_rng(7, 0, d["image_id"]))
        assert torch.equal(d["image"], expected["image"]) and torch.equal(d["boxes"], expected["boxes"])
    other = take(build_detection_train_loader(make_cfg(grouping=False, seed=8), dataset=dataset), 4)
    assert summary(other) != summary(take(build_detection_train_loader(cfg, dataset=dataset), 4))
    # SEED < 0 falls back to the fixed default (0), so it still reproduces.
    assert summary(take(build_detection_train_loader(make_cfg(seed=-1), dataset=dataset), 3)) == summary(
        take(build_detection_train_loader(make_cfg(seed=0), dataset=dataset), 3)
    )


def test_train_same_batches_with_workers_and_resume(dataset):
    reference = take(build_detection_train_loader(make_cfg(workers=0), dataset=dataset), 6)
    loader = build_detection_train_loader(make_cfg(workers=2), dataset=dataset)
    stream = iter(loader)
    first = [next(stream) for _ in range(3)]
    # Workers prefetch ahead; the state is still that of the 3 batches delivered.
    state = loader.state_dict()
    rest = [next(stream) for _ in range(3)]
    assert summary(first + rest) == summary(reference)
    del stream
    resumed = build_detection_train_loader(make_cfg(workers=0), dataset=dataset)
    resumed.load_state_dict(state)
    assert summary(take(resumed, 3)) == summary(reference[3:])
    # A loader iterated again continues after the last delivered batch, not after the prefetched ones.
    assert summary(take(loader, 1)) == summary(take(build_detection_train_loader(make_cfg(), dataset=dataset), 7)[6:])


def test_train_batch_size_must_divide_over_processes(dataset, monkeypatch):
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    with pytest.raises(ValueError, match=r"IMS_PER_BATCH \(3\).*\(2\)"):
        build_detection_train_loader(make_cfg(ims_per_batch=3), dataset=dataset)
    monkeypatch.setattr(comm, "get_rank", lambda: 1)
    (batch,) = take(build_detection_train_loader(make_cfg(ims_per_batch=4), dataset=dataset), 1)
    assert len(batch) == 2


def test_test_loader_every_image_once_in_order(dataset):
    batches = list(build_detection_test_loader(make_cfg(), "toy_test", dataset=dataset))
    assert [len(b) for b in batches] == [2, 2, 2, 1]
    outputs = [d for b in batches for d in b]
    assert [d["image_id"] for d in outputs] == list(range(len(SIZES)))
    # (32, 48) with short side 16 -> (16, 24); the original size is reported.
    assert tuple(outputs[0]["image"].shape) == (3, 16, 24) and (outputs[0]["height"], outputs[0]["width"]) == (32, 48)


def test_test_loader_shards_and_catalog(dataset, monkeypatch):
    DatasetCatalog.register("toy_loader_test", lambda: dataset)
    try:
        monkeypatch.setattr(comm, "get_world_size", lambda: 2)
        monkeypatch.setattr(comm, "get_rank", lambda: 1)
        batches = list(build_detection_test_loader(make_cfg(workers=2), "toy_loader_test"))
    finally:
        DatasetCatalog.remove("toy_loader_test")
    # 7 images over 2 ranks: rank 0 gets 0-3, rank 1 gets 4-6.
    assert [[d["image_id"] for d in b] for b in batches] == [[4, 5], [6]]


@pytest.mark.parametrize("workers", [-1, 1.5])
def test_a_bad_number_of_loader_workers_names_the_key(dataset, workers):
    cfg = make_cfg()
    cfg.DATALOADER.NUM_WORKERS = workers
    with pytest.raises(ValueError, match=rf"DATALOADER.NUM_WORKERS is {workers}; expected 0"):
        build_detection_train_loader(cfg, dataset=dataset)
    with pytest.raises(ValueError, match=rf"DATALOADER.NUM_WORKERS is {workers}; expected 0"):
        build_detection_test_loader(cfg, "toy_test", dataset=dataset)


def test_starting_the_training_loader_leaves_the_global_generator_alone(dataset):
    # A resumed run restores the global torch generator, then starts a new loader iterator; if that
    # drew from the global generator, every random sample after a resume (RPN and ROI sampling)
    # would differ from the uninterrupted run's.
    loader = build_detection_train_loader(make_cfg(), dataset=dataset)
    torch.manual_seed(3)
    before = torch.get_rng_state()
    take(loader, 2)
    take(loader, 1)  # a second iterator, as after a resume
    assert torch.equal(torch.get_rng_state(), before)

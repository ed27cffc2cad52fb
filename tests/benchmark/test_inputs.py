"""retinadet.benchmark.inputs: the synthetic and dataset batches a benchmark times."""
import pytest
import torch

from retinadet.benchmark import BenchmarkError, BenchmarkOptions
from retinadet.benchmark.inputs import (
    check_one_size_per_batch,
    choose_input,
    dataset_batches,
    input_batches,
    synthetic_batches,
    to_device,
)
from tests.benchmark.benchmark_checks import QUICK, RCNN_TINY, SHAPES_TINY, frozen_config


def test_mixed_image_sizes_are_refused_for_the_comparison():
    batch = [{"image": torch.zeros(3, 64, 96, dtype=torch.uint8)}, {"image": torch.zeros(3, 96, 64, dtype=torch.uint8)}]
    check_one_size_per_batch([batch[:1], batch[1:]])
    with pytest.raises(BenchmarkError, match=r"share one size .* a batch holds \[\(64, 96\), \(96, 64\)\]"):
        check_one_size_per_batch([batch])


def test_synthetic_batches_differ_and_keep_to_the_configs_classes():
    cfg = frozen_config(RCNN_TINY, "MODEL.ROI_HEADS.NUM_CLASSES", "2")
    batches = synthetic_batches(cfg, 3, 2, (64, 96))
    assert [len(b) for b in batches] == [2, 2, 2]
    assert all(x["image"].shape == (3, 64, 96) and x["image"].dtype == torch.uint8 for b in batches for x in b)
    assert all(int(x["labels"].max()) < 2 for b in batches for x in b)  # ROI_HEADS.NUM_CLASSES, not RetinaNet's
    assert not torch.equal(batches[0][0]["image"], batches[1][0]["image"])  # batch i is seeded with i
    assert torch.equal(synthetic_batches(cfg, 1, 2, (64, 96))[0][0]["image"], batches[0][0]["image"])


def test_to_device_copies_the_tensors_only():
    batch = [{"image": torch.zeros(3, 2, 2), "file_name": "a.png"}]
    moved = to_device(batch, torch.device("cpu"))
    assert moved is not batch and moved[0] is not batch[0] and moved[0]["file_name"] == "a.png"


def test_input_defaults_to_the_dataset_when_registered(tmp_path):
    shapes = frozen_config(SHAPES_TINY, "DATASETS.ROOT", str(tmp_path))
    assert choose_input(shapes, BenchmarkOptions(SHAPES_TINY, "train")) == "dataset"
    assert choose_input(shapes, BenchmarkOptions(SHAPES_TINY, "train", size=(64, 96))) == "synthetic"
    assert choose_input(shapes, BenchmarkOptions(SHAPES_TINY, "eval", input="synthetic")) == "synthetic"
    assert choose_input(frozen_config(QUICK), BenchmarkOptions(QUICK, "eval")) == "synthetic"  # no data sets


def test_input_batches_of_the_train_and_eval_tasks():
    cfg = frozen_config(QUICK, "SOLVER.IMS_PER_BATCH", "3", "TEST.IMS_PER_BATCH", "1")
    source, size, batches = input_batches(cfg, BenchmarkOptions(QUICK, "train", size=(64, 96)), 2)
    assert (source, size, [len(b) for b in batches]) == ("synthetic", (64, 96), [3, 3])
    source, size, batches = input_batches(cfg, BenchmarkOptions(QUICK, "eval"), 1)
    assert (source, size, [len(b) for b in batches]) == ("synthetic", (256, 320), [1])  # the default size


def test_dataset_batches_cycle_a_short_test_set(tmp_path):
    cfg = frozen_config(SHAPES_TINY, "DATASETS.ROOT", str(tmp_path), "TEST.IMS_PER_BATCH", "8")
    test_set = cfg.DATASETS.TEST[0]
    count = 8  # more batches than the tiny test set holds
    batches = dataset_batches(cfg, "eval", count)
    assert len(batches) == count and all(1 <= len(b) <= 8 for b in batches), test_set
    with pytest.raises(BenchmarkError, match="--size sets the synthetic image size"):
        input_batches(cfg, BenchmarkOptions(SHAPES_TINY, "eval", input="dataset", size=(64, 96)), 1)
    with pytest.raises(BenchmarkError, match=r"DATASETS.TEST, but it is \[\]"):
        input_batches(frozen_config(QUICK), BenchmarkOptions(QUICK, "eval", input="dataset"), 1)

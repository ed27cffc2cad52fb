"""The batches a benchmark times: synthetic images of one size or batches of the config's data loaders,
collected before timing and moved to the model's device."""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from retinadet.config import CfgNode
from retinadet.data import build_detection_test_loader, build_detection_train_loader
from retinadet.utils.synthetic import make_synthetic_batch

from .config import default_size, num_classes, registered, require_registered
from .options import BenchmarkError, BenchmarkOptions

__all__ = ["Batch", "check_one_size_per_batch", "choose_input", "dataset_batches", "input_batches",
           "synthetic_batches", "to_device"]

Batch = List[Dict[str, Any]]


def choose_input(cfg: CfgNode, options: BenchmarkOptions) -> str:
    """``options.input``, else "dataset" when the task's data sets (DATASETS.TRAIN for train, else
    DATASETS.TEST) are registered and no size is given, else "synthetic"."""
    if options.input:
        return options.input
    names = cfg.DATASETS.TRAIN if options.task == "train" else cfg.DATASETS.TEST
    return "dataset" if options.size is None and registered(cfg, names) else "synthetic"


def to_device(batch: Batch, device: torch.device) -> Batch:
    """A copy of ``batch`` with its tensors on ``device``."""
    return [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in x.items()} for x in batch]


def synthetic_batches(cfg: CfgNode, count: int, batch_size: int, size: Tuple[int, int]) -> List[Batch]:
    """``count`` different batches (batch i seeded with i) of ``batch_size`` random uint8 images of ``size``
    (H, W), each with a few random boxes of the config's classes."""
    return [
        make_synthetic_batch(batch_size, *size, num_classes=num_classes(cfg), seed=i)
        for i in range(count)
    ]


def dataset_batches(cfg: CfgNode, task: str, count: int) -> List[Batch]:
    """The first ``count`` batches of the training loader (``task`` "train") or of DATASETS.TEST[0]'s test
    loader (any other task; cycling when the set is short). BenchmarkError when the sets are not registered."""
    if task == "train":
        require_registered(cfg, "TRAIN", "--input dataset")
        batches = iter(build_detection_train_loader(cfg))
        return [next(batches) for _ in range(count)]
    require_registered(cfg, "TEST", "--input dataset")
    loader = build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])
    collected: List[Batch] = []
    while len(collected) < count:
        collected.extend(b for _, b in zip(range(count - len(collected)), loader))
    return collected


def check_one_size_per_batch(batches: Sequence[Batch]) -> None:
    """Raise BenchmarkError when a batch mixes image sizes (torchvision would resize some of them)."""
    for batch in batches:
        sizes = {tuple(x["image"].shape[-2:]) for x in batch}
        if len(sizes) > 1:
            raise BenchmarkError(
                f"--compare-torchvision needs the images of a batch to share one size (torchvision would resize "
                f"the others); a batch holds {sorted(sizes)}. Use --input synthetic."
            )


def input_batches(
    cfg: CfgNode, options: BenchmarkOptions, count: int
) -> Tuple[str, Optional[Tuple[int, int]], List[Batch]]:
    """(source "synthetic" or "dataset", the synthetic size or None, ``count`` batches on MODEL.DEVICE) for
    the train, eval or flops task of ``options``: SOLVER.IMS_PER_BATCH images per batch for train, else
    TEST.IMS_PER_BATCH."""
    source = choose_input(cfg, options)
    if source == "synthetic":
        size = tuple(options.size) if options.size else default_size(cfg)
        batch_size = cfg.SOLVER.IMS_PER_BATCH if options.task == "train" else cfg.TEST.IMS_PER_BATCH
        batches = synthetic_batches(cfg, count, batch_size, size)
    else:
        if options.size:
            raise BenchmarkError("--size sets the synthetic image size; it does not apply to --input dataset.")
        size = None
        batches = dataset_batches(cfg, "train" if options.task == "train" else "eval", count)
    if options.compare_torchvision:
        check_one_size_per_batch(batches)
    device = torch.device(cfg.MODEL.DEVICE)
    return source, size, [to_device(b, device) for b in batches]

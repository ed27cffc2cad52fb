"""The evaluator interface and the loop that runs a model over a data set and feeds an evaluator."""
import datetime
import logging
import os
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sized

import torch
from torch import nn

from retinadet.utils import comm

__all__ = ["DatasetEvaluator", "default_output_dir", "inference_on_dataset"]

logger = logging.getLogger("retinadet.evaluation")

# The first batches pay for lazy set-up (allocator growth, worker start-up, cuDNN autotuning), so they
# are left out of the per-image timings.
_NUM_WARMUP = 5


class DatasetEvaluator:
    """Accumulates a model's outputs over a data set and computes metrics from them.

    A pass is ``reset()``, then ``process(inputs, outputs)`` once per batch, then ``evaluate()``.
    In a distributed run every rank processes its share; ``evaluate()`` combines them.
    """

    def reset(self) -> None:
        """Forget everything processed so far; called before each pass."""

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Record one batch.

        Args:
            inputs: the batch as given to the model, one dict per image (with ``"image_id"``).
            outputs: what the model returned for it, one dict per image in the same order:
                ``"boxes"`` (D, 4) xyxy absolute pixels of the original image, ``"scores"`` (D,),
                ``"labels"`` (D,) int64 contiguous class labels.
        """

    def evaluate(self) -> Optional[Dict[str, Any]]:
        """Metrics of everything processed, ``{task: {metric: value}}``; None or {} when there is nothing
        to report (for example on ranks other than 0)."""
        return None


def default_output_dir(cfg: Any, dataset_name: str) -> str:
    """Where evaluation files of ``dataset_name`` go: ``cfg.OUTPUT_DIR/inference/<dataset_name>``."""
    return os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)


@contextmanager
def _inference_context(model: nn.Module) -> Iterator[None]:
    """Eval mode without autograd; afterwards every submodule gets back its own training flag.

    Flags are restored one by one rather than with ``model.train(previous)``, which would also switch
    on submodules that were deliberately kept in eval mode (frozen batch norm).
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


def _wait_for_device() -> None:
    # CUDA kernels run asynchronously; without this the time of one batch would be billed to the next.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(round(seconds))))


def inference_on_dataset(
    model: nn.Module,
    data_loader: Sized,
    evaluator: DatasetEvaluator,
    log_period_s: float = 5.0,
) -> Dict[str, Any]:
    """Run ``model`` on every batch of ``data_loader``, feed ``evaluator`` and return its results.

    The model runs in eval mode under ``torch.no_grad()``; each submodule's training flag is restored
    afterwards. A progress line (batches done / ``len(data_loader)``, seconds per image, ETA) is logged
    on ``logging.getLogger("retinadet.evaluation")`` every ``log_period_s`` seconds and after the last
    batch; the first few batches are left out of the timings.

    Args:
        model: takes a batch (list[dict], see ``DatasetEvaluator.process``) and returns one dict per image.
        data_loader: iterable of batches with a length (the number of batches on this rank).
        evaluator: receives ``reset()``, ``process(inputs, outputs)`` per batch, then ``evaluate()``.
        log_period_s: seconds between progress lines.

    Returns:
        ``evaluator.evaluate()``, or {} when it returns None.
    """
    total = len(data_loader)
    world_size = comm.get_world_size()
    logger.info("Start inference on %d batches in this process (%d processes).", total, world_size)
    num_warmup = min(_NUM_WARMUP, max(total - 1, 0))
    evaluator.reset()

    images = timed_images = 0
    compute_time = 0.0
    start = timed_start = last_log = time.perf_counter()
    with _inference_context(model):
        for idx, inputs in enumerate(data_loader):
            if idx == num_warmup:
                timed_start, timed_images, compute_time = time.perf_counter(), 0, 0.0
            compute_start = time.perf_counter()
            outputs = model(inputs)
            _wait_for_device()
            compute_time += time.perf_counter() - compute_start
            evaluator.process(inputs, outputs)

            images += len(inputs)
            timed_images += len(inputs)
            now = time.perf_counter()
            if now - last_log >= log_period_s or idx + 1 == total:
                last_log = now
                timed_batches = idx + 1 - num_warmup if idx >= num_warmup else idx + 1
                elapsed = now - (timed_start if idx >= num_warmup else start)
                eta = elapsed / timed_batches * (total - idx - 1)
                logger.info(
                    "Inference done %d/%d batches (%d images). %.4f s/img. ETA=%s",
                    idx + 1, total, images, elapsed / max(timed_images, 1), _duration(eta),
                )

    total_time = time.perf_counter() - start
    timed_time = time.perf_counter() - timed_start
    logger.info(
        "Total inference time: %s (%.6f s/img per process over %d timed images, on %d processes; "
        "model alone %.6f s/img).",
        _duration(total_time), timed_time / max(timed_images, 1), timed_images, world_size,
        compute_time / max(timed_images, 1),
    )
    results = evaluator.evaluate()
    # Ranks other than 0 usually return nothing; callers can always index a dict.
    return results if results is not None else {}

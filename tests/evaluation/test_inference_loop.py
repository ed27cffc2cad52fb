"""Tests of inference_on_dataset with a fake model, a list of batches and a recording evaluator."""
import logging
import re
from typing import Any, Dict, List, Optional

import pytest
import torch
from torch import nn

from retinadet.evaluation import DatasetEvaluator, inference_on_dataset


class _FakeModel(nn.Module):
    """Outputs a fixed dict per image (its image id as a score); records the mode it ran in.

    ``frozen`` stays in eval mode on purpose (like frozen batch norm): the loop must not switch it on.
    """

    def __init__(self, fail_at: Optional[int] = None) -> None:
        super().__init__()
        self.frozen = nn.BatchNorm2d(3)
        self.fail_at = fail_at
        self.calls: List[Dict[str, bool]] = []

    def forward(self, batch: List[Dict[str, Any]]) -> List[Dict[str, torch.Tensor]]:
        self.calls.append({"training": self.training, "frozen_training": self.frozen.training,
                           "grad": torch.is_grad_enabled()})
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise RuntimeError("model failed")
        return [{"scores": torch.tensor([float(x["image_id"])])} for x in batch]


class _RecordingEvaluator(DatasetEvaluator):
    def __init__(self, result: Optional[Dict] = None) -> None:
        self.result = result
        self.events: List[Any] = []

    def reset(self) -> None:
        self.events.append("reset")

    def process(self, inputs, outputs) -> None:
        self.events.append(([x["image_id"] for x in inputs], [float(o["scores"][0]) for o in outputs]))

    def evaluate(self) -> Optional[Dict]:
        self.events.append("evaluate")
        return self.result


def _training_model(fail_at: Optional[int] = None) -> _FakeModel:
    """A model in training mode whose ``frozen`` part is in eval mode."""
    model = _FakeModel(fail_at).train()
    model.frozen.eval()
    return model


def _loader(sizes: List[int]) -> List[List[Dict[str, int]]]:
    """Batches of the given sizes with consecutive image ids from 1."""
    batches, next_id = [], 1
    for size in sizes:
        batches.append([{"image_id": next_id + k} for k in range(size)])
        next_id += size
    return batches


def test_processes_every_batch_and_returns_the_evaluator_results():
    model = _training_model()
    evaluator = _RecordingEvaluator({"bbox": {"AP": 42.0}})
    results = inference_on_dataset(model, _loader([2, 1, 3]), evaluator)
    assert results == {"bbox": {"AP": 42.0}}
    assert evaluator.events == ["reset", ([1, 2], [1.0, 2.0]), ([3], [3.0]), ([4, 5, 6], [4.0, 5.0, 6.0]), "evaluate"]
    assert model.calls == [{"training": False, "frozen_training": False, "grad": False}] * 3
    # Training mode is back, and the frozen part stays frozen.
    assert model.training and not model.frozen.training
    assert torch.is_grad_enabled()


def test_eval_mode_is_kept_and_none_becomes_empty_dict():
    model = _FakeModel().eval()
    assert inference_on_dataset(model, _loader([1]), _RecordingEvaluator(None)) == {}
    assert not model.training


def test_training_mode_restored_when_the_model_fails():
    model = _training_model(fail_at=2)
    with pytest.raises(RuntimeError, match="model failed"):
        inference_on_dataset(model, _loader([1, 1, 1]), _RecordingEvaluator())
    assert model.training and not model.frozen.training and torch.is_grad_enabled()


def test_progress_and_total_time_are_logged(caplog):
    with caplog.at_level(logging.INFO, logger="retinadet.evaluation"):
        inference_on_dataset(_FakeModel(), _loader([2, 2, 1]), _RecordingEvaluator(), log_period_s=0.0)
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Inference done")]
    # log_period_s=0 logs after every batch: batches done / len(loader), images so far, s/img, ETA.
    assert [re.match(r"Inference done (\d+)/3 batches \((\d+) images\)", m).groups() for m in progress] == [
        ("1", "2"), ("2", "4"), ("3", "5")]
    assert all(re.search(r"\d+\.\d{4} s/img\. ETA=\d+:\d\d:\d\d$", m) for m in progress)
    assert progress[-1].endswith("ETA=0:00:00")
    total = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Total inference time")]
    # Warm-up is min(5, 3 - 1) = 2 batches, so only the last batch's single image is timed.
    assert len(total) == 1 and "over 1 timed images, on 1 processes" in total[0]


def test_only_the_last_progress_line_with_a_long_period(caplog):
    with caplog.at_level(logging.INFO, logger="retinadet.evaluation"):
        inference_on_dataset(_FakeModel(), _loader([1] * 8), _RecordingEvaluator(), log_period_s=3600.0)
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Inference done")]
    # 8 batches, warm-up 5: three single-image batches are timed.
    assert len(progress) == 1 and progress[0].startswith("Inference done 8/8 batches (8 images)")
    assert any("over 3 timed images" in r.getMessage() for r in caplog.records)


def test_empty_loader():
    evaluator = _RecordingEvaluator({})
    assert inference_on_dataset(_FakeModel(), [], evaluator) == {}
    assert evaluator.events == ["reset", "evaluate"]

"""Tests of checkpoint reading, weight loading with reports, and tools/convert_weights.py."""
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.detection import retinanet_resnet50_fpn
from torchvision.ops.misc import FrozenBatchNorm2d

from retinadet.checkpoint import (
    convert_torchvision_retinanet,
    load_checkpoint_file,
    load_model_weights,
    load_weights,
)
from retinadet.utils.testing import load_tool

REPO = Path(__file__).resolve().parents[2]
NUM_ANCHORS = 9


class TinyDetector(nn.Module):
    """A few layers under retinadet's top-level names, enough to exercise the loader."""

    def __init__(self, num_classes: int, norm: str = "frozen"):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.conv1 = nn.Conv2d(3, 8, 3, bias=False)
        self.backbone.bn1 = FrozenBatchNorm2d(8) if norm == "frozen" else nn.BatchNorm2d(8)
        self.head = nn.Module()
        self.head.cls_score = nn.Conv2d(8, NUM_ANCHORS * num_classes, 3, padding=1)
        self.head.bbox_pred = nn.Conv2d(8, NUM_ANCHORS * 4, 3, padding=1)


def _random_state(model: nn.Module, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) for k, v in model.state_dict().items()}


def test_shape_mismatch_is_skipped_with_one_warning(caplog):
    torch.manual_seed(0)
    model = TinyDetector(num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = _random_state(TinyDetector(num_classes=5))
    with caplog.at_level(logging.WARNING, logger="retinadet.checkpoint"):
        report = load_model_weights(model, state, source="five-class.pth")

    skipped = ["head.cls_score.weight", "head.cls_score.bias"]
    assert report["skipped_shape"] == skipped
    assert report["missing"] == [] and report["unexpected"] == []
    assert sorted(report["loaded"]) == sorted(set(state) - set(skipped))
    after = model.state_dict()
    for key in report["loaded"]:
        assert torch.equal(after[key], state[key]), key
    for key in skipped:
        assert torch.equal(after[key], before[key]), key  # the model's own init is kept

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    # 9 anchors x 5 classes = 45 channels in the checkpoint, 9 x 3 = 27 in the model.
    assert "head.cls_score.weight: checkpoint (45, 8, 3, 3), model (27, 8, 3, 3)" in message
    assert "head.cls_score.bias: checkpoint (45,), model (27,)" in message
    assert "five-class.pth" in message


def test_missing_and_unexpected_are_reported_grouped(caplog):
    model = TinyDetector(num_classes=3)
    state = _random_state(model)
    del state["head.bbox_pred.weight"], state["head.bbox_pred.bias"]
    state["head.extra.weight"] = torch.zeros(2)
    state["head.extra.bias"] = torch.zeros(2)
    with caplog.at_level(logging.WARNING, logger="retinadet.checkpoint"):
        report = load_model_weights(model, state)
    assert sorted(report["missing"]) == ["head.bbox_pred.bias", "head.bbox_pred.weight"]
    assert sorted(report["unexpected"]) == ["head.extra.bias", "head.extra.weight"]
    assert "head.extra.weight" not in report["loaded"]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "head.bbox_pred.{" in text and "head.extra.{" in text


def test_num_batches_tracked_dropped_for_frozen_norm():
    model = TinyDetector(num_classes=3, norm="frozen")
    state = _random_state(model)
    state["backbone.bn1.num_batches_tracked"] = torch.tensor(7)  # saved from a BatchNorm2d
    report = load_model_weights(model, state)
    assert report["unexpected"] == [] and report["missing"] == []
    assert "backbone.bn1.num_batches_tracked" not in report["loaded"]
    assert torch.equal(model.backbone.bn1.running_var, state["backbone.bn1.running_var"])


def test_frozen_checkpoint_into_batch_norm_model_reports_nothing_missing():
    model = TinyDetector(num_classes=3, norm="bn")
    state = {k: v for k, v in _random_state(model).items() if "num_batches_tracked" not in k}
    report = load_model_weights(model, state)
    assert report["missing"] == []
    assert torch.equal(model.backbone.bn1.running_mean, state["backbone.bn1.running_mean"])


# ---------------------------------------------------------------------------- files


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_checkpoint_file(str(path))


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_truncated_file_is_named(tmp_path, suffix):
    state = {"w": torch.arange(1000.0)}
    full = tmp_path / f"full{suffix}"
    if suffix == ".pkl":
        with open(full, "wb") as f:
            pickle.dump({"model": {"w": state["w"].numpy()}}, f)
    else:
        torch.save(state, full)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert torch.equal(load_checkpoint_file(str(full))["w"], state["w"])
    with pytest.raises(RuntimeError, match=f"cut{suffix}"):
        load_checkpoint_file(str(cut))


def test_wrappers_unwrapped_and_non_tensors_rejected(tmp_path):
    w = torch.ones(2)
    for wrapper in ("model", "state_dict"):
        path = tmp_path / f"{wrapper}.pth"
        torch.save({wrapper: {"head.w": w}, "iteration": 3}, path)
        loaded = load_checkpoint_file(str(path))
        assert list(loaded) == ["head.w"] and torch.equal(loaded["head.w"], w)
    path = tmp_path / "bad.pth"
    torch.save({"head.w": w, "note": "text"}, path)
    with pytest.raises(ValueError, match="'note'"):
        load_checkpoint_file(str(path))


def test_load_weights_detects_detectron2_pkl(tmp_path):
    model = TinyDetector(num_classes=3)
    gen = np.random.default_rng(0)
    zoo = {
        "backbone.bottom_up.stem.conv1.weight": gen.standard_normal((8, 3, 3, 3), np.float32),
        "backbone.bottom_up.stem.conv1.norm.running_mean": gen.standard_normal(8, np.float32),
        "head.cls_score.bias": gen.standard_normal(27, np.float32),
        "pixel_mean": np.zeros((3, 1, 1), np.float32),
    }
    path = tmp_path / "model_final.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": zoo, "__author__": "Detectron2 Model Zoo"}, f)
    report = load_weights(model, str(path))
    assert sorted(report["loaded"]) == [
        "backbone.bn1.running_mean",
        "backbone.conv1.weight",
        "head.cls_score.bias",
    ]
    assert report["unexpected"] == []
    expected = zoo["backbone.bottom_up.stem.conv1.norm.running_mean"]
    assert np.array_equal(model.backbone.bn1.running_mean.numpy(), expected)


def test_load_weights_strips_data_parallel_prefix(tmp_path):
    model = TinyDetector(num_classes=3)
    state = _random_state(model)
    path = tmp_path / "ddp.pth"
    torch.save({"model": {"module." + k: v for k, v in state.items()}}, path)
    report = load_weights(model, str(path))
    assert sorted(report["loaded"]) == sorted(state)
    assert torch.equal(model.head.bbox_pred.weight, state["head.bbox_pred.weight"])


# ---------------------------------------------------------------------------- the tool


def _tool_module():
    """tools/convert_weights.py (a script, not a package module), to call its main() in-process."""
    return load_tool("convert_weights")


def _run_tool(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "convert_weights.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    torch.manual_seed(0)
    state = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=5).state_dict()
    path = tmp_path_factory.mktemp("tv") / "retinanet_tv.pth"
    torch.save(state, path)
    return path, state


def test_tool_converts_torchvision(torchvision_file, tmp_path):
    path, state = torchvision_file
    out = tmp_path / "sub" / "converted.pth"
    result = _run_tool("--source", "torchvision", "--input", str(path), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert f"Converted {len(state)} tensors" in result.stdout
    assert out.exists() and not Path(str(out) + ".tmp").exists()
    saved = torch.load(out, map_location="cpu", weights_only=True)
    assert saved["__source__"] == "torchvision"
    expected = convert_torchvision_retinanet(state)
    assert saved["model"].keys() == expected.keys()
    key = "head.cls_subnet.6.weight"
    assert torch.equal(saved["model"][key], expected[key])
    assert load_checkpoint_file(str(out)).keys() == expected.keys()


def test_tool_bad_source_prints_usage():
    result = _run_tool("--source", "caffe", "--input", "x.pth", "--output", "y.pth")
    assert result.returncode == 2
    assert "usage:" in result.stderr and "invalid choice: 'caffe'" in result.stderr


def test_tool_rejects_wrong_source_and_missing_input(torchvision_file, tmp_path, capsys):
    tool = _tool_module()
    path, _ = torchvision_file
    out = tmp_path / "o.pth"
    assert tool.main(["--source", "detectron2", "--input", str(path), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "does not look like a detectron2 checkpoint" in err
    assert "backbone.body.conv1.weight" in err  # names a few of the file's keys
    assert not out.exists()
    missing = str(tmp_path / "absent.pth")
    assert tool.main(["--source", "torchvision", "--input", missing, "--output", str(out)]) == 1
    assert "absent.pth" in capsys.readouterr().err

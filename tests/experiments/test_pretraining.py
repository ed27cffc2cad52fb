"""The shared backbone of an ablation: exported from a run's final checkpoint, loaded by a fresh model."""
import os

import pytest
import torch

from retinadet.config import get_cfg
from retinadet.experiments.pretraining import BACKBONE_FILE, backbone_state_dict, export_backbone_weights
from retinadet.modeling import build_model

TINY = "configs/quick/retinanet_R_18_shapes_tiny.yaml"


def _model(seed: int, weights: str = ""):
    cfg = get_cfg()
    cfg.merge_from_file(TINY)
    cfg.MODEL.BACKBONE.WEIGHTS = weights
    torch.manual_seed(seed)
    return build_model(cfg)


def test_exported_backbone_loads_into_a_fresh_model(tmp_path):
    trained = _model(seed=1)
    torch.save({"model": trained.state_dict(), "iteration": 6}, tmp_path / "model_final.pth")
    path = export_backbone_weights(str(tmp_path))
    assert path == os.path.join(str(tmp_path), BACKBONE_FILE)
    saved = torch.load(path, weights_only=True)
    assert set(saved) == set(trained.backbone.state_dict())

    fresh = _model(seed=2, weights=path)
    for key, value in trained.backbone.state_dict().items():
        assert torch.equal(fresh.backbone.state_dict()[key], value), key
    # Only the backbone comes from the file: the FPN and the heads keep their own initialisation.
    name, value = next(iter(trained.neck.state_dict().items()))
    assert not torch.equal(fresh.neck.state_dict()[name], value)


def test_an_existing_export_is_reused(tmp_path):
    (tmp_path / BACKBONE_FILE).write_bytes(b"kept")
    assert export_backbone_weights(str(tmp_path)) == os.path.join(str(tmp_path), BACKBONE_FILE)
    assert (tmp_path / BACKBONE_FILE).read_bytes() == b"kept"


def test_unfinished_run_and_foreign_checkpoints_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no model_final.pth; it did not finish"):
        export_backbone_weights(str(tmp_path))
    with pytest.raises(ValueError, match=r"no 'backbone\.\*' tensors \(first keys: \['fc.weight'\]\)"):
        backbone_state_dict({"model": {"fc.weight": torch.zeros(1)}})
    assert not os.path.exists(tmp_path / BACKBONE_FILE)


def test_the_ema_weights_are_exported_when_the_run_kept_them():
    raw = {"backbone.conv.weight": torch.zeros(2), "head.bias": torch.zeros(1)}
    ema = {"backbone.conv.weight": torch.full((2,), 0.5), "head.bias": torch.ones(1)}
    # The weights the run was evaluated with (its EMA), not the last raw step's.
    assert torch.equal(backbone_state_dict({"model": raw, "model_ema": ema})["conv.weight"], torch.full((2,), 0.5))
    assert torch.equal(backbone_state_dict({"model": raw})["conv.weight"], torch.zeros(2))
    assert list(backbone_state_dict(raw)) == ["conv.weight"]  # a bare state dict

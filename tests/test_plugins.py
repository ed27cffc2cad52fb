"""Plug-ins: a user's file registers a head, a loss and config keys; a YAML names them; nothing in
retinadet/ changes. Installed packages announce themselves through the 'retinadet.plugins' group."""
import os
import sys
import textwrap

import pytest
import torch

from retinadet import plugins
from retinadet.config import get_cfg
from retinadet.modeling import build_model
from retinadet.registry import HEAD_REGISTRY
from retinadet.utils.synthetic import make_synthetic_batch

HERE = os.path.dirname(os.path.abspath(__file__))
TOY_CONFIG = os.path.join(HERE, "plugins", "toy_retinanet.yaml")


def _toy_cfg(*overrides):
    cfg = get_cfg()
    cfg.merge_from_file(TOY_CONFIG)
    cfg.merge_from_list(list(overrides))
    return cfg


def test_yaml_naming_plugin_parts_builds_trains_and_infers():
    cfg = _toy_cfg()
    assert cfg.MODEL.TOY_HEAD.HIDDEN == 16  # the plug-in's own key, set by the YAML
    assert cfg.MODEL.SCALED_FOCAL.FACTOR == 2.0  # the plug-in's default
    torch.manual_seed(0)
    model = build_model(cfg)
    assert type(model.head).__name__ == "ToyHead" and model.head.hidden.out_channels == 16
    assert type(model.cls_loss).__name__ == "ScaledFocalLoss"

    batch = make_synthetic_batch(2, 64, 96, num_classes=3, seed=0)
    losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    sum(losses.values()).backward()
    assert model.head.hidden.weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        detections = model(batch)
    assert len(detections) == 2 and all(d["boxes"].shape[1] == 4 for d in detections)


def test_plugin_keys_take_overrides_and_change_the_loss():
    torch.manual_seed(0)
    batch = make_synthetic_batch(1, 64, 96, num_classes=3, seed=1)
    cfg1 = _toy_cfg("MODEL.RETINANET.LOSS_NORMALIZER_MOMENTUM", "0.0")
    cfg3 = _toy_cfg("MODEL.RETINANET.LOSS_NORMALIZER_MOMENTUM", "0.0", "MODEL.SCALED_FOCAL.FACTOR", "6.0")
    torch.manual_seed(0)
    loss1 = build_model(cfg1)(batch)["loss_cls"]
    torch.manual_seed(0)
    loss3 = build_model(cfg3)(batch)["loss_cls"]
    assert torch.allclose(loss3, 3 * loss1, rtol=1e-5)  # factor 6 vs 2, same weights and batch


def test_plugin_named_on_the_command_line(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.PLUGINS", f"['{os.path.join(HERE, 'plugins', 'toy_parts.py')}']",
                         "MODEL.TOY_HEAD.HIDDEN", "8"])
    assert cfg.MODEL.TOY_HEAD.HIDDEN == 8


def test_missing_plugins_are_named():
    with pytest.raises(FileNotFoundError, match="no_such_plugin.py"):
        get_cfg().merge_from_list(["MODEL.PLUGINS", "['/nonexistent/no_such_plugin.py']"])
    with pytest.raises(ModuleNotFoundError, match="no_such_module_xyz.*MODEL.PLUGINS"):
        plugins.import_plugin("no_such_module_xyz")


def test_entry_point_plugins_are_loaded(tmp_path, monkeypatch):
    # A minimal installed distribution: a module and a dist-info declaring the entry point.
    (tmp_path / "acme_heads.py").write_text(textwrap.dedent("""
        from torch import nn
        from retinadet.registry import HEAD_REGISTRY

        @HEAD_REGISTRY.register()
        class AcmeEntryPointHead(nn.Module):
            pass
    """))
    dist = tmp_path / "acme_heads-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-heads\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[retinadet.plugins]\nacme = acme_heads\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    assert "AcmeEntryPointHead" not in HEAD_REGISTRY
    try:
        assert "acme" in plugins.load_entry_point_plugins()
        assert "AcmeEntryPointHead" in HEAD_REGISTRY
        assert plugins.load_entry_point_plugins() == []  # once per process
    finally:
        HEAD_REGISTRY._obj_map.pop("AcmeEntryPointHead", None)
        sys.modules.pop("acme_heads", None)

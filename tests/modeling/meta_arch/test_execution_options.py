"""MODEL.CHANNELS_LAST and MODEL.COMPILE: same numbers as the default path, refusals and the eager fallback."""
import logging

import pytest
import torch
from torch import nn

from retinadet.modeling import build_model
from retinadet.modeling.compile import apply_channels_last, compile_submodules
from retinadet.registry import META_ARCH_REGISTRY
from retinadet.utils.testing import quick_batch, quick_cfg, quick_model, spread_scores


def test_channels_last_gives_the_same_losses_and_detections():
    batch = quick_batch(2)
    plain, nhwc = quick_model(), quick_model("MODEL.CHANNELS_LAST", "True")
    assert not plain.channels_last and nhwc.channels_last
    assert nhwc.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    images = nhwc.preprocess_image(batch).tensor
    assert images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
    nhwc.load_state_dict(plain.state_dict())
    plain.train(), nhwc.train()
    ours, ref = nhwc(batch), plain(batch)
    for k in ref:
        assert torch.allclose(ours[k], ref[k], rtol=1e-4, atol=1e-5), k
    for m in (plain, nhwc):
        spread_scores(m)
        m.eval()
    with torch.no_grad():
        a, b = nhwc(batch), plain(batch)
    assert len(b[0]["scores"]) > 0
    for x, y in zip(a, b):
        assert torch.allclose(x["boxes"], y["boxes"], atol=1e-3) and torch.equal(x["labels"], y["labels"])


class _NoChannelsLastDetector(nn.Module):
    """A plug-in meta-architecture that meets the Detector contract but does not declare channels_last support."""

    compile_targets = ()

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    @classmethod
    def from_config(cls, cfg):
        return {}

    def forward(self, batched_inputs):
        return [{} for _ in batched_inputs]


def test_channels_last_refused_for_a_model_that_cannot_use_it():
    META_ARCH_REGISTRY.register(_NoChannelsLastDetector)
    try:
        cfg = quick_cfg("MODEL.META_ARCHITECTURE", "_NoChannelsLastDetector", "MODEL.CHANNELS_LAST", "True")
        with pytest.raises(ValueError, match="MODEL.CHANNELS_LAST is True, but _NoChannelsLastDetector cannot use it"):
            build_model(cfg)
    finally:
        META_ARCH_REGISTRY._obj_map.pop("_NoChannelsLastDetector")
    linear = nn.Linear(2, 2)
    linear.channels_last = False
    with pytest.raises(ValueError, match="no 2-D convolution"):
        apply_channels_last(linear)


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch, caplog):
    calls = []

    def failing_compile(fn, **kwargs):
        assert kwargs.get("dynamic") is True

        def compiled(*args, **kw):
            calls.append(1)
            raise RuntimeError("no C++ compiler found\nmore detail")
        return compiled

    monkeypatch.setattr(torch, "compile", failing_compile)
    batch = quick_batch(1)
    reference = quick_model()
    model = quick_model("MODEL.COMPILE", "True")
    model.train(), reference.train()
    with caplog.at_level(logging.WARNING, logger="retinadet.modeling.compile"):
        first, second = model(batch), model(batch)
    # One failed attempt per compiled submodule (backbone, neck, head), then eager for good.
    assert len(calls) == 3
    warnings = [r.getMessage() for r in caplog.records if "torch.compile" in r.getMessage()]
    assert len(warnings) == 3 and all("RuntimeError: no C++ compiler found" in w for w in warnings)
    assert "backbone" in warnings[0] and "MODEL.COMPILE" in warnings[0]
    # The loss normaliser (an EMA buffer) moves with each training call, so compare call by call.
    expected_first, expected_second = reference(batch), reference(batch)
    for k in expected_first:
        assert torch.allclose(first[k], expected_first[k]) and torch.allclose(second[k], expected_second[k])
    # Parameter names, and so checkpoints, are untouched.
    assert list(model.state_dict()) == list(reference.state_dict())


def test_compile_missing_warns_and_keeps_eager(monkeypatch, caplog):
    monkeypatch.delattr(torch, "compile")
    with caplog.at_level(logging.WARNING, logger="retinadet.modeling.compile"):
        model = compile_submodules(nn.Sequential(nn.Conv2d(3, 3, 1)), ["0"])
    assert "has no torch.compile" in caplog.text
    assert "forward" not in vars(model[0])

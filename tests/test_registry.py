"""Registries: lookups that explain themselves, duplicates that name both places, the generic builder."""
import pytest
from torch import nn

from retinadet import registry
from retinadet.config import get_cfg
from retinadet.modeling import build
from retinadet.registry import CLS_LOSS_REGISTRY, HEAD_REGISTRY, Registry


def test_family_registries_hold_their_built_in_parts_under_class_names():
    import retinadet.modeling  # noqa: F401  (registers the built-in parts)

    expected = {
        "BACKBONE_REGISTRY": {"ResNet"},
        "NECK_REGISTRY": {"FPN"},
        "HEAD_REGISTRY": {"RetinaNetHead"},
        "ANCHOR_GENERATOR_REGISTRY": {"DefaultAnchorGenerator", "TorchvisionAnchorGenerator"},
        "MATCHER_REGISTRY": {"IoUMatcher"},
        "BOX_CODER_REGISTRY": {"DeltaXYWHBoxCoder"},
        "CLS_LOSS_REGISTRY": {"SigmoidFocalLoss", "SigmoidFocalLossStar", "AlphaBalancedCrossEntropy"},
        "BOX_LOSS_REGISTRY": {"SmoothL1Loss", "L1Loss", "GIoULoss"},
        "ROI_BOX_HEAD_REGISTRY": {"FastRCNNFCHead"},
        "META_ARCH_REGISTRY": {"RetinaNet"},
    }
    for attr, names in expected.items():
        reg = getattr(registry, attr)
        assert names <= set(reg.names()), (attr, reg.names())
        for name in names:
            assert reg.get(name).__name__ == name


def test_unknown_name_lists_registered_names_and_the_closest():
    import retinadet.modeling  # noqa: F401

    with pytest.raises(KeyError) as info:
        HEAD_REGISTRY.get("RetinaNetHaed")
    message = str(info.value)
    assert "'RetinaNetHaed'" in message and "HEAD registry" in message
    assert "['RetinaNetHead'" in message or "'RetinaNetHead'" in message
    assert "Did you mean 'RetinaNetHead'?" in message
    with pytest.raises(KeyError, match="Did you mean 'SigmoidFocalLoss'"):
        CLS_LOSS_REGISTRY.get("SigmoidFocalLos")


def test_registering_a_name_twice_names_both_places():
    reg = Registry("TEST")

    @reg.register()
    class Part:
        pass

    with pytest.raises(KeyError) as info:

        @reg.register()
        class Part:  # noqa: F811  (the duplicate under test)
            pass

    message = str(info.value)
    assert message.count("test_registry.py:") == 2  # file:line of the first and of the second class
    assert "already registered in the TEST registry" in message


def test_build_calls_from_config_with_the_context():
    reg = Registry("TEST")

    @reg.register()
    class Scaled(nn.Module):
        def __init__(self, width: int, factor: float):
            super().__init__()
            self.width, self.factor = width, factor

        @classmethod
        def from_config(cls, cfg, factor):
            return {"width": cfg.MODEL.FPN.OUT_CHANNELS, "factor": factor}

    built = build(reg, "Scaled", get_cfg(), factor=3.0)
    assert (built.width, built.factor) == (256, 3.0)

    @reg.register()
    class NoFromConfig:
        pass

    with pytest.raises(TypeError, match="NoFromConfig.*from_config"):
        build(reg, "NoFromConfig", get_cfg())

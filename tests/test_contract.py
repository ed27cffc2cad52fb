"""Registry contracts: a plug-in that misses a member, or sits in the wrong registry, fails at build time
with a message naming the class, the registry and what is missing."""
import pytest
from torch import nn

import retinadet.modeling  # noqa: F401  (registers the built-in parts)
from retinadet import registry
from retinadet.config import get_cfg
from retinadet.contract import ContractError, check_class, contract_members
from retinadet.engine import HookBase
from retinadet.modeling import build_model
from retinadet.modeling.losses import SigmoidFocalLoss
from retinadet.modeling.roi_heads.box_head import FastRCNNFCHead
from retinadet.registry import (
    BOX_LOSS_REGISTRY,
    CLS_LOSS_REGISTRY,
    HEAD_REGISTRY,
    HOOK_REGISTRY,
    ROI_BOX_HEAD_REGISTRY,
    build,
)
from retinadet.utils.testing import get_config, registered


def tiny_cfg(**model):
    return get_config("quick/retinanet_R_18_shapes_tiny.yaml", *[x for kv in model.items() for x in kv])


def test_contract_members_are_read_from_the_protocol():
    methods, attributes = contract_members(registry.Backbone)
    assert set(methods) == {"from_config", "forward", "output_shape"}
    assert attributes == ["size_divisibility"]
    methods, attributes = contract_members(registry.BoxRegressionLoss)
    assert set(methods) == {"from_config", "forward"} and attributes == []
    assert set(contract_members(registry.DenseHead)[1]) == {"num_anchors"}


def test_every_registry_has_a_contract_and_its_built_in_parts_meet_it():
    for name, contract in registry.CONTRACTS.items():
        assert contract is not None, name
    for reg in (registry.BACKBONE_REGISTRY, registry.NECK_REGISTRY, HEAD_REGISTRY, registry.MATCHER_REGISTRY,
                registry.BOX_CODER_REGISTRY, CLS_LOSS_REGISTRY, BOX_LOSS_REGISTRY, registry.SAMPLER_REGISTRY,
                ROI_BOX_HEAD_REGISTRY, registry.ANCHOR_GENERATOR_REGISTRY, registry.META_ARCH_REGISTRY):
        for part in reg.names():
            check_class(reg.get(part), reg.contract, f"the {reg._name} registry", part)


class HeadWithoutForward(nn.Module):
    num_anchors = 9

    @classmethod
    def from_config(cls, cfg, input_shape, num_anchors):
        return {}


def test_a_head_without_forward_fails_at_build_time_naming_class_registry_and_member():
    with registered(HEAD_REGISTRY, HeadWithoutForward) as name:
        with pytest.raises(ContractError) as info:
            build_model(tiny_cfg(**{"MODEL.HEAD.NAME": name}))
    message = str(info.value)
    assert "HeadWithoutForward" in message and "HEAD registry" in message
    assert "DenseHead contract" in message and "no method forward(features)" in message
    assert "test_contract.py" in message  # where the class is defined


def test_a_loss_registered_as_a_head_is_refused_for_its_forward_and_its_from_config():
    with registered(HEAD_REGISTRY, SigmoidFocalLoss, "FocalAsHead") as name:
        with pytest.raises(ContractError) as info:
            build_model(tiny_cfg(**{"MODEL.HEAD.NAME": name}))
    message = str(info.value)
    assert "SigmoidFocalLoss (registered as 'FocalAsHead' in the HEAD registry" in message
    assert "cannot be called as the contract's forward(features)" in message
    assert ("does not accept what the HEAD registry passes, from_config(cfg, input_shape=..., num_anchors=...)"
            in message)


def test_a_classification_loss_in_the_box_loss_registry_is_refused_for_its_forward():
    class TwoArgumentBoxLoss(nn.Module):
        @classmethod
        def from_config(cls, cfg, loss_cfg):
            return {}

        def forward(self, logits, targets):
            return logits.sum()

    with registered(BOX_LOSS_REGISTRY, TwoArgumentBoxLoss) as name:
        with pytest.raises(ContractError) as info:
            build(BOX_LOSS_REGISTRY, name, get_cfg(), loss_cfg=get_cfg().MODEL.BOX_LOSS)
    message = str(info.value)
    assert "BoxRegressionLoss contract" in message
    assert "forward(pred_deltas, gt_boxes, anchors, box_coder)" in message


def test_the_roi_box_head_is_not_a_dense_head():
    with registered(HEAD_REGISTRY, FastRCNNFCHead, "BoxHeadAsDense") as name:
        with pytest.raises(ContractError, match="FastRCNNFCHead.*HEAD registry.*does not accept"):
            build_model(tiny_cfg(**{"MODEL.HEAD.NAME": name}))


def test_a_missing_attribute_is_found_on_the_built_instance():
    class HeadWithoutAnchorCount(nn.Module):
        @classmethod
        def from_config(cls, cfg, input_shape, num_anchors):
            return {}

        def forward(self, features):
            return [], []

    with registered(HEAD_REGISTRY, HeadWithoutAnchorCount) as name:
        with pytest.raises(ContractError, match="HeadWithoutAnchorCount.*no attribute num_anchors"):
            build_model(tiny_cfg(**{"MODEL.HEAD.NAME": name}))


def test_from_config_must_be_a_classmethod_and_the_entry_a_class():
    class PlainFromConfig(nn.Module):
        num_anchors = 1

        def from_config(self, cfg, input_shape, num_anchors):
            return {}

        def forward(self, features):
            return [], []

    with registered(HEAD_REGISTRY, PlainFromConfig) as name:
        with pytest.raises(ContractError, match="from_config is not a classmethod"):
            build(HEAD_REGISTRY, name, get_cfg(), input_shape=[], num_anchors=1)
    with registered(HEAD_REGISTRY, lambda cfg: None, "AFunction") as name:
        with pytest.raises(ContractError, match="'AFunction' in the HEAD registry.*is a function"):
            build(HEAD_REGISTRY, name, get_cfg(), input_shape=[], num_anchors=1)


def test_hooks_have_one_way_to_be_built():
    class NotAHook:
        def after_step(self):
            pass

    class CountingHook(HookBase):
        def __init__(self):
            self.count = 0

    with registered(HOOK_REGISTRY, CountingHook) as name:
        hook = build(HOOK_REGISTRY, name, get_cfg(), trainer=object())
    assert isinstance(hook, CountingHook) and hook.count == 0
    with registered(HOOK_REGISTRY, NotAHook) as name:
        with pytest.raises(ContractError, match=r"NotAHook.*HOOK registry.*Hook contract.*no method "
                                                r"from_config\(cfg, trainer\)"):
            build(HOOK_REGISTRY, name, get_cfg(), trainer=object())

"""Tests of the FPN neck against torchvision's FeaturePyramidNetwork + LastLevelP6P7."""
import math
from collections import OrderedDict

import pytest
import torch
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from retinadet.config import get_cfg
from retinadet.modeling.build import build
from retinadet.modeling.necks import FPN
from retinadet.modeling.shape_spec import ShapeSpec
from retinadet.registry import NECK_REGISTRY

# Small channel counts keep the test fast; C5 (128) != out (64) so that torchvision's
# LastLevelP6P7 picks C5 or P5 from its in_channels exactly as we ask.
IN_SHAPE = {
    "res2": ShapeSpec(channels=16, stride=4),
    "res3": ShapeSpec(channels=32, stride=8),
    "res4": ShapeSpec(channels=64, stride=16),
    "res5": ShapeSpec(channels=128, stride=32),
}
IN_FEATURES = ["res3", "res4", "res5"]
OUT = 64


def _features(batch, height, width, seed=0):
    """Backbone-like features of an image of (height, width): sizes round up at each stride 2."""
    g = torch.Generator().manual_seed(seed)
    feats = OrderedDict()
    for name, spec in IN_SHAPE.items():
        h, w = math.ceil(height / spec.stride), math.ceil(width / spec.stride)
        feats[name] = torch.randn(batch, spec.channels, h, w, generator=g)
    return feats


def _torchvision_fpn_like(ours, p6_in_channels):
    """torchvision FPN with our weights: inner_blocks.i.0 = lateral i, layer_blocks.i.0 = output i."""
    theirs = FeaturePyramidNetwork(
        [IN_SHAPE[f].channels for f in IN_FEATURES], OUT, extra_blocks=LastLevelP6P7(p6_in_channels, OUT)
    )
    mapping = {}
    for i in range(len(IN_FEATURES)):
        for p in ("weight", "bias"):
            mapping[f"inner_blocks.{i}.0.{p}"] = f"lateral_convs.{i}.{p}"
            mapping[f"layer_blocks.{i}.0.{p}"] = f"output_convs.{i}.{p}"
            mapping[f"extra_blocks.p6.{p}"] = f"top_convs.0.{p}"
            mapping[f"extra_blocks.p7.{p}"] = f"top_convs.1.{p}"
    ours_sd = ours.state_dict()
    assert set(theirs.state_dict()) == set(mapping)
    assert set(ours_sd) == set(mapping.values())
    theirs.load_state_dict({k: ours_sd[v] for k, v in mapping.items()})
    return theirs


@pytest.mark.parametrize(
    "top_block_in_feature, p6_in_channels",
    [("p5", OUT), ("res5", IN_SHAPE["res5"].channels)],  # torchvision P6-from-P5 / paper P6-from-C5
)
@pytest.mark.parametrize("size", [(256, 320), (200, 296)])  # padded to 32, and not padded
def test_matches_torchvision(top_block_in_feature, p6_in_channels, size):
    torch.manual_seed(0)
    fpn = FPN(IN_SHAPE, IN_FEATURES, out_channels=OUT, top_block_in_feature=top_block_in_feature)
    # Non-zero biases so a dropped bias would show.
    with torch.no_grad():
        for name, p in fpn.named_parameters():
            if name.endswith("bias"):
                p.normal_()
    ref = _torchvision_fpn_like(fpn, p6_in_channels)
    assert ref.extra_blocks.use_P5 == (top_block_in_feature == "p5")
    feats = _features(2, *size)
    ours = fpn(feats)
    theirs = ref(OrderedDict((f, feats[f]) for f in IN_FEATURES))
    assert list(ours) == ["p3", "p4", "p5", "p6", "p7"]
    theirs_list = list(theirs.values())
    for name, ref_out in zip(ours, theirs_list):
        assert ours[name].shape == ref_out.shape, name
        torch.testing.assert_close(ours[name], ref_out, atol=1e-5, rtol=1e-5, msg=name)


def test_p6_input_channels():
    a = FPN(IN_SHAPE, IN_FEATURES, out_channels=OUT, top_block_in_feature="p5")
    b = FPN(IN_SHAPE, IN_FEATURES, out_channels=OUT, top_block_in_feature="res5")
    assert a.top_convs[0].in_channels == OUT
    assert b.top_convs[0].in_channels == IN_SHAPE["res5"].channels


def test_output_shapes_and_strides_256x320():
    fpn = FPN(IN_SHAPE, IN_FEATURES, out_channels=OUT)
    shapes = fpn.output_shape()
    # P3..P7 strides 8..128; 256x320 input -> 32x40, 16x20, 8x10, 4x5, then
    # ceil(4/2) x ceil(5/2) = 2x3 (3x3 stride-2 conv, padding 1), then 1x2.
    assert {k: v.stride for k, v in shapes.items()} == {"p3": 8, "p4": 16, "p5": 32, "p6": 64, "p7": 128}
    assert all(v.channels == OUT for v in shapes.values())
    assert fpn.size_divisibility == 32
    out = fpn(_features(1, 256, 320))
    expected = {"p3": (32, 40), "p4": (16, 20), "p5": (8, 10), "p6": (4, 5), "p7": (2, 3)}
    assert list(out) == list(shapes)
    for name, t in out.items():
        assert tuple(t.shape) == (1, OUT) + expected[name], name
        stride = shapes[name].stride
        assert tuple(t.shape[-2:]) == (math.ceil(256 / stride), math.ceil(320 / stride))


def test_module_names_init_and_norm():
    fpn = FPN(IN_SHAPE, IN_FEATURES, out_channels=OUT)
    assert [c.kernel_size for c in fpn.lateral_convs] == [(1, 1)] * 3
    assert [c.in_channels for c in fpn.lateral_convs] == [32, 64, 128]
    assert [c.kernel_size for c in fpn.output_convs] == [(3, 3)] * 3
    assert [(c.kernel_size, c.stride) for c in fpn.top_convs] == [((3, 3), (2, 2))] * 2
    assert not hasattr(fpn, "lateral_norms")
    # kaiming_uniform_(a=1): U(-b, b) with b = sqrt(3 / fan_in); zero bias.
    for conv in list(fpn.lateral_convs) + list(fpn.output_convs) + list(fpn.top_convs):
        fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        bound = math.sqrt(3.0 / fan_in)
        assert conv.weight.abs().max() <= bound
        assert conv.weight.abs().max() > 0.9 * bound
        assert torch.equal(conv.bias, torch.zeros_like(conv.bias))

    gn = FPN(IN_SHAPE, IN_FEATURES, out_channels=OUT, norm="GN")
    assert all(c.bias is None for c in list(gn.lateral_convs) + list(gn.output_convs))
    assert [type(m).__name__ for m in gn.lateral_norms] == ["GroupNorm"] * 3
    assert [m.num_groups for m in gn.output_norms] == [32] * 3
    out = gn(_features(2, 64, 64))
    # After GroupNorm (weight 1, bias 0) each group of a merged map has mean ~0.
    p3 = out["p3"].reshape(2, 32, -1)
    assert p3.mean(-1).abs().max() < 1e-4


def test_from_config_and_registry():
    cfg = get_cfg()
    cfg.MODEL.FPN.OUT_CHANNELS = OUT
    cfg.MODEL.FPN.TOP_BLOCK_IN_FEATURE = "p5"
    cfg.MODEL.FPN.NUM_TOP_LEVELS = 1
    fpn = build(NECK_REGISTRY, "FPN", cfg, input_shape=IN_SHAPE)
    assert isinstance(fpn, FPN)
    assert list(fpn.output_shape()) == ["p3", "p4", "p5", "p6"]
    assert fpn.top_convs[0].in_channels == OUT


def test_res2_to_res5_levels():
    fpn = FPN(IN_SHAPE, ["res2", "res3", "res4", "res5"], out_channels=OUT, num_top_levels=1)
    assert {k: v.stride for k, v in fpn.output_shape().items()} == {
        "p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64
    }


@pytest.mark.parametrize("bad", ["res4", "p6", "c5", ""])
def test_bad_top_block_in_feature(bad):
    with pytest.raises(ValueError, match="top_block_in_feature") as info:
        FPN(IN_SHAPE, IN_FEATURES, top_block_in_feature=bad)
    assert "'res5'" in str(info.value) and "'p5'" in str(info.value)


def test_bad_in_features():
    with pytest.raises(ValueError, match="res6"):
        FPN(IN_SHAPE, ["res3", "res4", "res6"])
    with pytest.raises(ValueError, match="increasing strides"):
        FPN(IN_SHAPE, ["res4", "res3", "res5"])
    with pytest.raises(ValueError, match="power-of-two"):
        FPN({"a": ShapeSpec(8, 6), "b": ShapeSpec(8, 12)}, ["a", "b"], top_block_in_feature="b")

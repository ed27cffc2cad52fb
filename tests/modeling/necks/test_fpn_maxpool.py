"""FPN with the max-pool top block: torchvision's FeaturePyramidNetwork + LastLevelMaxPool."""
import math
from collections import OrderedDict

import pytest
import torch
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from retinadet.config import get_cfg
from retinadet.modeling.build import build
from retinadet.modeling.necks import FPN
from retinadet.modeling.shape_spec import ShapeSpec
from retinadet.registry import NECK_REGISTRY

IN_SHAPE = {
    "res2": ShapeSpec(channels=16, stride=4),
    "res3": ShapeSpec(channels=32, stride=8),
    "res4": ShapeSpec(channels=64, stride=16),
    "res5": ShapeSpec(channels=128, stride=32),
}
IN_FEATURES = ["res2", "res3", "res4", "res5"]
OUT = 32


def _features(height, width, seed=0):
    g = torch.Generator().manual_seed(seed)
    return OrderedDict(
        (name, torch.randn(2, s.channels, math.ceil(height / s.stride), math.ceil(width / s.stride), generator=g))
        for name, s in IN_SHAPE.items()
    )


def _maxpool_fpn(**kwargs):
    torch.manual_seed(0)
    return FPN(IN_SHAPE, IN_FEATURES, out_channels=OUT, top_block="maxpool", top_block_in_feature="p5",
               num_top_levels=1, **kwargs)


@pytest.mark.parametrize("height, width", [(128, 160), (100, 70)])  # padded, and odd sizes
def test_matches_torchvision_last_level_max_pool(height, width):
    ours = _maxpool_fpn()
    theirs = FeaturePyramidNetwork([IN_SHAPE[f].channels for f in IN_FEATURES], OUT, extra_blocks=LastLevelMaxPool())
    sd = ours.state_dict()
    theirs.load_state_dict({
        f"{block}.{i}.0.{p}": sd[f"{mine}.{i}.{p}"]
        for block, mine in (("inner_blocks", "lateral_convs"), ("layer_blocks", "output_convs"))
        for i in range(4) for p in ("weight", "bias")
    })
    feats = _features(height, width)
    with torch.no_grad():
        out = ours(feats)
        ref = theirs(feats)
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    assert list(ref) == list(IN_FEATURES) + ["pool"]
    for mine, theirs_out in zip(out.values(), ref.values()):
        torch.testing.assert_close(mine, theirs_out)
    # P6 is every other pixel of P5, hand-checked on one position.
    assert out["p6"].shape[-2:] == (math.ceil(out["p5"].shape[-2] / 2), math.ceil(out["p5"].shape[-1] / 2))
    assert torch.equal(out["p6"][:, :, 1, 1], out["p5"][:, :, 2, 2])


def test_no_parameters_and_output_shape():
    fpn = _maxpool_fpn()
    assert len(fpn.top_convs) == 0
    assert not any(name.startswith("top") for name in fpn.state_dict())
    assert fpn.output_shape() == {f"p{k}": ShapeSpec(OUT, 2**k) for k in range(2, 7)}


def test_two_max_pooled_levels():
    fpn = FPN(IN_SHAPE, IN_FEATURES, out_channels=OUT, top_block="maxpool", top_block_in_feature="p5",
              num_top_levels=2)
    out = fpn(_features(128, 128))
    assert list(fpn.output_shape()) == ["p2", "p3", "p4", "p5", "p6", "p7"]
    assert torch.equal(out["p7"], out["p5"][:, :, ::4, ::4])


def test_from_config():
    cfg = get_cfg()
    cfg.merge_from_list([
        "MODEL.FPN.IN_FEATURES", str(IN_FEATURES), "MODEL.FPN.OUT_CHANNELS", str(OUT),
        "MODEL.FPN.TOP_BLOCK", "maxpool", "MODEL.FPN.TOP_BLOCK_IN_FEATURE", "p5", "MODEL.FPN.NUM_TOP_LEVELS", "1",
    ])
    fpn = build(NECK_REGISTRY, "FPN", cfg, input_shape=IN_SHAPE)
    assert fpn.top_block == "maxpool" and len(fpn.top_convs) == 0
    assert list(fpn.output_shape()) == ["p2", "p3", "p4", "p5", "p6"]
    assert get_cfg().MODEL.FPN.TOP_BLOCK == "conv"  # RetinaNet's default is unchanged


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"top_block": "avgpool", "top_block_in_feature": "p5"}, "'avgpool' \\(MODEL.FPN.TOP_BLOCK\\)"),
        ({"top_block": "maxpool", "top_block_in_feature": "res5"}, "must be 'p5'; got 'res5'"),
    ],
)
def test_bad_top_block(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FPN(IN_SHAPE, IN_FEATURES, out_channels=OUT, num_top_levels=1, **kwargs)

"""Tests of StandardRPNHead: torchvision's RPNHead outputs and layout, initialisation, arguments."""
import pytest
import torch
from torchvision.models.detection.rpn import RPNHead, concat_box_prediction_layers

from retinadet.config import get_cfg
from retinadet.modeling.build import build
from retinadet.modeling.heads import StandardRPNHead
from retinadet.modeling.shape_spec import ShapeSpec
from retinadet.registry import HEAD_REGISTRY

CHANNELS = 16
LEVELS = [ShapeSpec(CHANNELS, s) for s in (4, 8, 16)]


def _features(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, CHANNELS, h, w, generator=g) for h, w in ((12, 10), (6, 5), (3, 3))]


def test_outputs_equal_torchvision_rpn_head_in_its_flattened_order():
    torch.manual_seed(0)
    ours = StandardRPNHead(LEVELS, num_anchors=3)
    with torch.no_grad():  # spread weights so that a wrong layout cannot agree by accident
        for p in ours.parameters():
            p.normal_(0, 0.3)
    theirs = RPNHead(CHANNELS, 3)
    theirs.load_state_dict({
        "conv.0.0.weight": ours.conv.weight, "conv.0.0.bias": ours.conv.bias,
        "cls_logits.weight": ours.objectness_logits.weight, "cls_logits.bias": ours.objectness_logits.bias,
        "bbox_pred.weight": ours.anchor_deltas.weight, "bbox_pred.bias": ours.anchor_deltas.bias,
    })
    features = _features()
    with torch.no_grad():
        objectness, deltas = ours(features)
        ref_o, ref_d = theirs(features)
    assert [o.shape for o in objectness] == [(2, 12 * 10 * 3), (2, 6 * 5 * 3), (2, 3 * 3 * 3)]
    assert [d.shape for d in deltas] == [(2, 12 * 10 * 3, 4), (2, 6 * 5 * 3, 4), (2, 3 * 3 * 3, 4)]
    for o, d, r_o, r_d in zip(objectness, deltas, ref_o, ref_d):
        flat_o, flat_d = concat_box_prediction_layers([r_o], [r_d])  # (N * R, 1), (N * R, 4)
        torch.testing.assert_close(o.reshape(-1), flat_o.reshape(-1))
        torch.testing.assert_close(d.reshape(-1, 4), flat_d)
        assert o.std() > 0.1


def test_layout_is_row_column_anchor():
    """Entry (y, x, a) of a level is objectness channel a at pixel (y, x); deltas channels 4a..4a+3."""
    head = StandardRPNHead([ShapeSpec(CHANNELS, 8)], num_anchors=3)
    feature = torch.randn(1, CHANNELS, 4, 5)
    with torch.no_grad():
        raw_o = head.objectness_logits(head.conv(feature).relu())[0]  # (A, H, W)
        raw_d = head.anchor_deltas(head.conv(feature).relu())[0]  # (4A, H, W)
        objectness, deltas = head([feature])
    y, x, a = 2, 3, 1
    row = (y * 5 + x) * 3 + a
    assert objectness[0][0, row] == raw_o[a, y, x]
    assert torch.equal(deltas[0][0, row], raw_d[4 * a : 4 * a + 4, y, x])


def test_initialisation_normal_001_zero_bias():
    torch.manual_seed(0)
    head = StandardRPNHead([ShapeSpec(256, 4)], num_anchors=3)
    for conv in (head.conv, head.objectness_logits, head.anchor_deltas):
        assert torch.count_nonzero(conv.bias) == 0
        assert abs(conv.weight.std().item() - 0.01) < 0.001
        assert abs(conv.weight.mean().item()) < 0.001
    assert head.conv.kernel_size == (3, 3) and head.objectness_logits.kernel_size == (1, 1)
    assert head.objectness_logits.out_channels == 3 and head.anchor_deltas.out_channels == 12


def test_registered_and_built_from_config():
    head = build(HEAD_REGISTRY, "StandardRPNHead", get_cfg(), input_shape=LEVELS, num_anchors=5)
    assert isinstance(head, StandardRPNHead) and head.num_anchors == 5


@pytest.mark.parametrize(
    "levels, num_anchors, message",
    [
        ([ShapeSpec(16, 4), ShapeSpec(32, 8)], 3, "equal channels"),
        (LEVELS, 0, "num_anchors = 0"),
    ],
)
def test_bad_arguments(levels, num_anchors, message):
    with pytest.raises(ValueError, match=message):
        StandardRPNHead(levels, num_anchors=num_anchors)

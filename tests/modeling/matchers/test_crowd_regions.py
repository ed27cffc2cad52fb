"""Crowd regions: anchors they cover are ignored, never trained as background."""
import pytest
import torch

from retinadet.modeling.matchers import IGNORE, NEGATIVE, POSITIVE, IoUMatcher
from retinadet.modeling.meta_arch.input_checks import check_targets
from retinadet.modeling.meta_arch.dense_losses import match_anchors
from retinadet.ops import box_ioa


def test_box_ioa_hand_computed():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0], [3.0, 3.0, 3.0, 8.0]])
    regions = torch.tensor([[0.0, 0.0, 10.0, 10.0], [8.0, 0.0, 20.0, 4.0]])
    ioa = box_ioa(boxes, regions)
    # box 0 inside region 0: 100/100; with region 1: [8,10]x[0,4] = 8 -> 8/100.
    # box 1 with region 0: [5,10]^2 = 25/100; with region 1: no overlap in y ([5,15] vs [0,4]).
    # box 2 has zero area: 0, not NaN.
    expected = torch.tensor([[1.0, 0.08], [0.25, 0.0], [0.0, 0.0]])
    assert torch.equal(ioa, expected)


def test_crowd_region_turns_covered_negatives_into_ignore():
    anchors = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],     # matches the gt exactly: POSITIVE, stays so
        [50.0, 50.0, 60.0, 60.0],   # inside the crowd: NEGATIVE -> IGNORE
        [55.0, 50.0, 65.0, 60.0],   # half inside the crowd (x 55..60 of 55..65): 0.5 >= 0.5 -> IGNORE
        [56.0, 50.0, 66.0, 60.0],   # 4/10 inside: stays NEGATIVE
        [200.0, 200.0, 210.0, 210.0],  # far away: NEGATIVE
    ])
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    crowd = torch.tensor([[40.0, 40.0, 60.0, 70.0]])
    matcher = IoUMatcher((0.4, 0.5), (NEGATIVE, IGNORE, POSITIVE), allow_low_quality_matches=True)
    _, labels = matcher(gt, anchors, crowd_boxes=crowd)
    assert labels.tolist() == [POSITIVE, IGNORE, IGNORE, NEGATIVE, NEGATIVE]
    _, without = matcher(gt, anchors)
    assert without.tolist() == [POSITIVE, NEGATIVE, NEGATIVE, NEGATIVE, NEGATIVE]
    # An image whose only annotations are crowds still ignores what they cover.
    _, crowd_only = matcher(gt[:0], anchors, crowd_boxes=crowd)
    assert crowd_only.tolist() == [NEGATIVE, IGNORE, IGNORE, NEGATIVE, NEGATIVE]
    # A threshold above 1 switches crowd regions off.
    off = IoUMatcher((0.4, 0.5), (NEGATIVE, IGNORE, POSITIVE), crowd_ioa_threshold=1.01)
    assert off(gt, anchors, crowd_boxes=crowd)[1].tolist() == without.tolist()


def test_model_targets_carry_crowd_boxes_to_the_matcher():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    inputs = [{
        "image": torch.zeros(3, 8, 8),
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
        "labels": torch.tensor([1]),
        "crowd_boxes": torch.tensor([[40.0, 40.0, 70.0, 70.0]]),
    }]
    targets = check_targets(inputs, num_classes=3)
    labels, classes, _ = match_anchors(anchors, targets, IoUMatcher(), num_classes=3)
    assert labels.tolist() == [[POSITIVE, IGNORE]]
    assert classes.tolist() == [[1, 3]]


def test_bad_crowd_boxes_are_named():
    inputs = [{"image": torch.zeros(3, 8, 8), "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
               "crowd_boxes": torch.tensor([[5.0, 5.0, 1.0, 9.0]])}]
    with pytest.raises(ValueError, match=r"batched_inputs\[0\]\['crowd_boxes'\]\[0\].*x2 < x1"):
        check_targets(inputs, num_classes=3)

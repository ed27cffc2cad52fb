"""Tests of the matching-and-sampling step shared by RetinaNet, the RPN and the ROI heads
(retinadet/modeling/matchers/assignment.py), on a hand-built image whose every label is worked out below."""
import pytest
import torch

from retinadet.modeling.matchers import (
    IGNORE,
    NEGATIVE,
    POSITIVE,
    IoUMatcher,
    assign_targets,
    match_image,
    sample_image,
)
from retinadet.modeling.samplers import BalancedRandomSampler, OHEMSampler

# Two gt boxes: gt0 (class 2, area 100) and gt1 (class 0, area 400); one crowd region.
GT = torch.tensor([[0.0, 0.0, 10.0, 10.0], [100.0, 0.0, 120.0, 20.0]])
LABELS = torch.tensor([2, 0])
CROWD = torch.tensor([[40.0, 40.0, 80.0, 80.0]])
ANCHORS = torch.tensor([
    [0.0, 0.0, 10.0, 10.0],      # a0: gt0 itself, IoU 1                        -> POSITIVE
    [0.0, 0.0, 10.0, 22.0],      # a1: gt0, IoU 100 / 220 = 0.4545 in [0.4, 0.5) -> IGNORE (the band)
    [5.0, 0.0, 15.0, 10.0],      # a2: gt0, IoU 50 / 150 = 0.333                -> NEGATIVE
    [50.0, 50.0, 60.0, 60.0],    # a3: no gt; inside the crowd (IoA 1 >= 0.5)   -> IGNORE, not NEGATIVE
    [90.0, 90.0, 100.0, 100.0],  # a4: nothing                                  -> NEGATIVE
    [100.0, 0.0, 110.0, 10.0],   # a5: gt1, IoU 100 / 400 = 0.25, gt1's best    -> low-quality POSITIVE
    [110.0, 10.0, 130.0, 30.0],  # a6: gt1, IoU 100 / 700 = 0.143               -> NEGATIVE
])
K = 3  # classes; K is the background class index
EXPECTED_LABELS = [POSITIVE, IGNORE, NEGATIVE, IGNORE, NEGATIVE, POSITIVE, NEGATIVE]


def _target(crowd=CROWD):
    return {"boxes": GT, "labels": LABELS, "crowd_boxes": crowd}


def _matcher(low_quality=True):
    return IoUMatcher((0.4, 0.5), (NEGATIVE, IGNORE, POSITIVE), allow_low_quality_matches=low_quality)


def test_labels_classes_and_boxes_of_the_hand_built_image():
    (a,) = assign_targets(ANCHORS, [_target()], _matcher(), num_classes=K)
    assert a.match_labels.dtype == torch.int8 and a.match_labels.tolist() == EXPECTED_LABELS
    assert a.gt_classes.tolist() == [2, K, K, K, K, 0, K]
    assert a.matched_idxs[[0, 1, 2, 5, 6]].tolist() == [0, 0, 0, 1, 1]
    assert torch.equal(a.matched_boxes[0], GT[0]) and torch.equal(a.matched_boxes[5], GT[1])
    assert a.boxes is ANCHORS and a.positive_idx is None and a.negative_idx is None


def test_without_low_quality_matches_the_weak_anchor_is_background():
    (a,) = assign_targets(ANCHORS, [_target()], _matcher(low_quality=False), num_classes=K)
    assert a.match_labels.tolist() == [POSITIVE, IGNORE, NEGATIVE, IGNORE, NEGATIVE, NEGATIVE, NEGATIVE]
    assert a.gt_classes.tolist() == [2, K, K, K, K, K, K]


def test_crowd_regions_ignore_only_what_they_cover_and_only_when_given():
    no_crowd = match_image(ANCHORS, _target(crowd=torch.zeros(0, 4)), _matcher())
    assert no_crowd.match_labels[3] == NEGATIVE
    without_key = match_image(ANCHORS, {"boxes": GT}, _matcher())
    assert torch.equal(without_key.match_labels, no_crowd.match_labels)
    # A crowd over a POSITIVE anchor leaves it POSITIVE; only negatives become IGNORE.
    over_a0 = match_image(ANCHORS, _target(crowd=torch.tensor([[0.0, 0.0, 16.0, 10.0]])), _matcher())
    assert over_a0.match_labels[:3].tolist() == [POSITIVE, IGNORE, IGNORE]
    # Class-agnostic (RPN): no classes asked for, none computed.
    assert no_crowd.gt_classes is None


def test_image_without_gt_is_background_except_under_a_crowd():
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "crowd_boxes": CROWD}
    (a,) = assign_targets(ANCHORS, [target], _matcher(), num_classes=K)
    assert a.match_labels.tolist() == [NEGATIVE] * 3 + [IGNORE] + [NEGATIVE] * 3
    assert a.gt_classes.tolist() == [K] * 7
    assert torch.equal(a.matched_boxes, torch.zeros(7, 4))


def test_appended_gt_boxes_match_themselves():
    proposals = ANCHORS[2:5]  # a2, a3, a4: no foreground among the proposals
    (a,) = assign_targets([proposals], [_target()], _matcher(low_quality=False), num_classes=K, append_gt=True)
    assert torch.equal(a.boxes, torch.cat([proposals, GT]))
    assert a.match_labels.tolist() == [NEGATIVE, IGNORE, NEGATIVE, POSITIVE, POSITIVE]
    assert a.gt_classes.tolist() == [K, K, K, 2, 0]
    assert torch.equal(a.matched_boxes[3:], GT)


def test_gt_boxes_follow_the_candidates_dtype():
    target = {"boxes": GT.double(), "labels": LABELS.int(), "crowd_boxes": CROWD.double()}
    (a,) = assign_targets(ANCHORS, [target], _matcher(), num_classes=K)
    assert a.matched_boxes.dtype == torch.float32 and a.gt_classes.dtype == torch.int64
    assert a.match_labels.tolist() == EXPECTED_LABELS


def test_balanced_sampler_foreground_fraction_and_no_ignored_anchor():
    # B = 4 at 1:3: P = min(2 positives, int(4 * 0.25) = 1) = 1, Q = min(3 negatives, 4 - 1) = 3.
    sampler = BalancedRandomSampler(4, 0.25)
    for seed in range(20):
        torch.manual_seed(seed)
        (a,) = assign_targets(ANCHORS, [_target()], _matcher(), sampler, num_classes=K)
        assert a.positive_idx.numel() == 1 and a.positive_idx.item() in (0, 5)
        assert sorted(a.negative_idx.tolist()) == [2, 4, 6]  # never a1 (band) or a3 (crowd)


def test_sampler_draws_image_by_image_in_order_as_a_plain_loop_would():
    sampler = BalancedRandomSampler(3, 0.5)
    targets = [_target(), {"boxes": GT[:1], "labels": LABELS[:1]}, _target(crowd=torch.zeros(0, 4))]
    torch.manual_seed(7)
    assignments = assign_targets(ANCHORS, targets, _matcher(), sampler, num_classes=K)
    after = torch.rand(1)
    torch.manual_seed(7)
    for a, target in zip(assignments, targets):
        pos, neg = sampler(match_image(ANCHORS, target, _matcher()).match_labels)
        assert torch.equal(a.positive_idx, pos) and torch.equal(a.negative_idx, neg)
    assert torch.equal(torch.rand(1), after)  # the same random numbers consumed


def test_loss_ranking_sampler_gets_every_match_first_then_each_images_losses():
    losses = torch.tensor([0.1, 9.0, 0.5, 8.0, 0.3, 0.2, 0.7])  # a1, a3 (ignored) are never examples
    seen = []

    def example_losses(assignments):
        seen.append([a.match_labels.tolist() for a in assignments])  # every image matched already
        for _ in assignments:
            yield losses, ANCHORS

    # B = 3 with at most int(3 * 0.34) = 1 foreground: the hardest positive (a5, 0.2 > a0's 0.1) and
    # the two hardest negatives (a6 0.7, a2 0.5), each in decreasing loss.
    a, b = assign_targets(ANCHORS, [_target(), _target()], _matcher(), OHEMSampler(3, 0.34, 0.5),
                          example_losses=example_losses)
    assert seen == [[EXPECTED_LABELS, EXPECTED_LABELS]]
    assert a.positive_idx.tolist() == [5] and a.negative_idx.tolist() == [6, 2]
    assert torch.equal(b.positive_idx, a.positive_idx) and torch.equal(b.negative_idx, a.negative_idx)
    # No ratio: the three hardest examples of either kind.
    (c,) = assign_targets(ANCHORS, [_target()], _matcher(), OHEMSampler(3, -1.0, 0.5),
                          example_losses=lambda assigned: [(losses, ANCHORS)])
    assert c.positive_idx.tolist() == [] and c.negative_idx.tolist() == [6, 2, 4]


def test_missing_example_losses_and_mismatched_batches_are_named():
    with pytest.raises(ValueError, match="OHEMSampler ranks examples by their loss .* no example_losses"):
        assign_targets(ANCHORS, [_target()], _matcher(), OHEMSampler(3, -1.0, 0.5))
    with pytest.raises(ValueError, match=r"example_losses gave \(losses, boxes\) for 1 of 2 images"):
        assign_targets(ANCHORS, [_target(), _target()], _matcher(), OHEMSampler(3, -1.0, 0.5),
                       example_losses=lambda assigned: [(torch.zeros(7), ANCHORS)])
    with pytest.raises(ValueError, match="candidates for 1 images and 2 targets"):
        assign_targets([ANCHORS], [_target(), _target()], _matcher())


def test_sample_image_passes_losses_only_when_given():
    calls = []

    def sampler(labels, *extra):
        calls.append(len(extra))
        return labels.new_zeros(0, dtype=torch.int64), labels.new_zeros(0, dtype=torch.int64)

    a = match_image(ANCHORS, _target(), _matcher())
    sample_image(a, sampler)
    sample_image(a, sampler, torch.zeros(7), ANCHORS)
    assert calls == [0, 2] and a.positive_idx.numel() == 0

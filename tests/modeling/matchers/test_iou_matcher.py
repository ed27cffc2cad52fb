"""Tests of IoUMatcher: torchvision parity, interval edges, low-quality ties, degenerate inputs."""
import pytest
import torch
from torchvision.models.detection._utils import Matcher as TVMatcher

from retinadet.config import get_cfg
from retinadet.modeling import build
from retinadet.modeling.matchers import IGNORE, LABELS_BY_NAME, NEGATIVE, POSITIVE, IoUMatcher
from retinadet.ops import box_iou
from retinadet.registry import MATCHER_REGISTRY


def _random_boxes(generator: torch.Generator, n: int, size: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * size
    wh = torch.rand(n, 2, generator=generator) * size * 0.5 + 1.0
    return torch.cat([xy, xy + wh], dim=1)


def _labels_from_torchvision(tv_matches: torch.Tensor) -> torch.Tensor:
    # torchvision: -1 = below low threshold (our NEGATIVE), -2 = between thresholds (our IGNORE),
    # >= 0 = matched gt index (our POSITIVE).
    labels = torch.full_like(tv_matches, POSITIVE)
    labels[tv_matches == TVMatcher.BELOW_LOW_THRESHOLD] = NEGATIVE
    labels[tv_matches == TVMatcher.BETWEEN_THRESHOLDS] = IGNORE
    return labels


def test_label_constants():
    assert (NEGATIVE, IGNORE, POSITIVE) == (0, -1, 1)
    assert LABELS_BY_NAME == {"NEGATIVE": 0, "IGNORE": -1, "POSITIVE": 1}


@pytest.mark.parametrize("allow_low_quality", [True, False])
def test_matches_torchvision_on_random_boxes(allow_low_quality):
    generator = torch.Generator().manual_seed(0)
    ours = IoUMatcher((0.4, 0.5), ("NEGATIVE", "IGNORE", "POSITIVE"), allow_low_quality)
    theirs = TVMatcher(0.5, 0.4, allow_low_quality_matches=allow_low_quality)
    checked_positive = checked_ignore = 0
    for trial in range(60):
        num_gt = 1 + trial % 7
        gt = _random_boxes(generator, num_gt)
        # Jittered copies of the gt boxes among the anchors give every gt an overlap > 0 (so the
        # zero-IoU departure from torchvision never applies) and a spread of IoUs around 0.4-0.5.
        jitter = gt.repeat(3, 1) + torch.randn(3 * num_gt, 4, generator=generator) * 8.0
        jitter[:, 2:] = torch.max(jitter[:, 2:], jitter[:, :2] + 1.0)
        anchors = torch.cat([_random_boxes(generator, 200), jitter])

        matched_idxs, labels = ours(gt, anchors)
        tv_matches = theirs(box_iou(gt, anchors))

        assert matched_idxs.dtype == torch.int64 and labels.dtype == torch.int8
        assert matched_idxs.shape == labels.shape == (anchors.shape[0],)
        assert torch.equal(labels.long(), _labels_from_torchvision(tv_matches))
        positive = labels == POSITIVE
        assert torch.equal(matched_idxs[positive], tv_matches[positive])
        checked_positive += int(positive.sum())
        checked_ignore += int((labels == IGNORE).sum())
    # The comparison really covered positives and the ignore band.
    assert checked_positive > 100 and checked_ignore > 20


def test_exact_threshold_values_fall_in_upper_interval():
    matcher = IoUMatcher((0.4, 0.5))
    # One gt, anchors with IoU just below / exactly at each threshold.
    iou = torch.tensor([[0.39999, 0.4, 0.49999, 0.5, 0.9, 0.0]])
    matched_idxs, labels = matcher.match_iou_matrix(iou)
    assert labels.tolist() == [NEGATIVE, IGNORE, IGNORE, POSITIVE, POSITIVE, NEGATIVE]
    assert matched_idxs.tolist() == [0] * 6


def test_exact_threshold_from_real_boxes():
    # gt (0,0,10,10), area 100. Anchor (0,0,10,4): inter 40, union 100 -> IoU exactly 0.4 -> IGNORE.
    # Anchor (0,0,10,5): inter 50, union 100 -> IoU exactly 0.5 -> POSITIVE.
    # Anchor (0,0,10,3): IoU 0.3 -> NEGATIVE.
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    anchors = torch.tensor([[0.0, 0.0, 10.0, 4.0], [0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 10.0, 3.0]])
    # Exactly the float32 values of 0.4, 0.5 and 0.3, the same rounding as the thresholds get.
    assert torch.equal(box_iou(gt, anchors), torch.tensor([[0.4, 0.5, 0.3]]))
    _, labels = IoUMatcher((0.4, 0.5))(gt, anchors)
    assert labels.tolist() == [IGNORE, POSITIVE, NEGATIVE]


def test_best_gt_chosen_per_anchor():
    iou = torch.tensor([[0.6, 0.1, 0.45], [0.7, 0.3, 0.2]])
    matched_idxs, labels = IoUMatcher((0.4, 0.5)).match_iou_matrix(iou)
    assert matched_idxs.tolist() == [1, 1, 0]
    assert labels.tolist() == [POSITIVE, NEGATIVE, IGNORE]


def test_low_quality_matches_include_ties_and_keep_own_argmax():
    # gt 0's best IoU is 0.3, reached by anchors 0 and 2 (a tie): both become POSITIVE.
    # Anchor 2 prefers gt 1 (0.35 > 0.3), so it keeps gt 1 as its match.
    # gt 1's best IoU is 0.35 at anchor 2 only. Anchor 1 (0.1 / 0.2) stays NEGATIVE.
    iou = torch.tensor([[0.3, 0.1, 0.3, 0.0], [0.0, 0.2, 0.35, 0.05]])
    matched_idxs, labels = IoUMatcher((0.4, 0.5), allow_low_quality_matches=True).match_iou_matrix(iou)
    assert labels.tolist() == [POSITIVE, NEGATIVE, POSITIVE, NEGATIVE]
    assert matched_idxs[0].item() == 0 and matched_idxs[2].item() == 1
    # Without the option nothing reaches 0.4.
    _, labels = IoUMatcher((0.4, 0.5)).match_iou_matrix(iou)
    assert labels.tolist() == [NEGATIVE] * 4


def test_low_quality_promotes_an_ignored_anchor():
    iou = torch.tensor([[0.45, 0.2]])
    _, labels = IoUMatcher((0.4, 0.5), allow_low_quality_matches=True).match_iou_matrix(iou)
    assert labels.tolist() == [POSITIVE, NEGATIVE]


def test_zero_area_gt_gives_no_positive_and_no_nan():
    gt = torch.tensor([[5.0, 5.0, 5.0, 20.0], [50.0, 50.0, 60.0, 60.0]])  # first gt has width 0
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 30.0, 30.0], [100.0, 100.0, 110.0, 110.0]])
    iou = box_iou(gt, anchors)
    assert not torch.isnan(iou).any()
    matched_idxs, labels = IoUMatcher((0.4, 0.5), allow_low_quality_matches=True)(gt, anchors)
    # The second gt overlaps no anchor either: its best IoU is 0, so it adds nothing.
    assert labels.tolist() == [NEGATIVE, NEGATIVE, NEGATIVE]
    # torchvision would promote every anchor here (all tie at IoU 0): the documented departure.
    tv = TVMatcher(0.5, 0.4, allow_low_quality_matches=True)(iou)
    assert (tv >= 0).all()


def test_only_the_zero_gt_is_skipped():
    gt = torch.tensor([[5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 10.0, 8.0]])  # zero-area gt, real gt
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    matched_idxs, labels = IoUMatcher((0.4, 0.5), allow_low_quality_matches=True)(gt, anchors)
    # Real gt: IoU with anchor 0 = 80 / 100 = 0.8 -> POSITIVE; anchor 1 overlaps nothing.
    assert labels.tolist() == [POSITIVE, NEGATIVE]
    assert matched_idxs[0].item() == 1


def test_empty_gt_all_negative():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0]])
    matcher = IoUMatcher((0.4, 0.5), allow_low_quality_matches=True)
    matched_idxs, labels = matcher(torch.zeros(0, 4), anchors)
    assert matched_idxs.tolist() == [0, 0] and matched_idxs.dtype == torch.int64
    assert labels.tolist() == [NEGATIVE, NEGATIVE] and labels.dtype == torch.int8


def test_no_anchors():
    matched_idxs, labels = IoUMatcher(allow_low_quality_matches=True)(
        torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.zeros(0, 4)
    )
    assert matched_idxs.shape == labels.shape == (0,)


def test_custom_labels_and_two_intervals():
    matcher = IoUMatcher((0.5,), (NEGATIVE, POSITIVE))
    _, labels = matcher.match_iou_matrix(torch.tensor([[0.49, 0.5, 0.7]]))
    assert labels.tolist() == [NEGATIVE, POSITIVE, POSITIVE]
    # Mixed names and ints; an "ignore everything above 0.3" labelling.
    matcher = IoUMatcher((0.3, 0.6), ["NEGATIVE", IGNORE, "IGNORE"])
    _, labels = matcher.match_iou_matrix(torch.tensor([[0.1, 0.3, 0.8]]))
    assert labels.tolist() == [NEGATIVE, IGNORE, IGNORE]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"thresholds": (0.5, 0.4)}, "increase"),
        ({"thresholds": (0.4, 0.4)}, "increase"),
        ({"thresholds": (0.0, 0.5)}, "0.0"),
        ({"thresholds": (0.4, 1.0)}, "1.0"),
        ({"thresholds": ()}, "at least one"),
        ({"labels": ("NEGATIVE", "POSITIVE")}, "len(labels)"),
        ({"labels": ("NEGATIVE", "IGNORED", "POSITIVE")}, "IGNORED"),
        ({"labels": (0, -1, 2)}, "2"),
    ],
)
def test_invalid_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError) as info:
        IoUMatcher(**kwargs)
    assert message in str(info.value)


def test_from_config_and_registry():
    cfg = get_cfg()
    cfg.MODEL.MATCHER.THRESHOLDS = [0.3, 0.6]
    cfg.MODEL.MATCHER.LABELS = ["NEGATIVE", "IGNORE", "POSITIVE"]
    cfg.MODEL.MATCHER.ALLOW_LOW_QUALITY_MATCHES = False
    matcher = build(MATCHER_REGISTRY, "IoUMatcher", cfg)
    assert isinstance(matcher, IoUMatcher)
    assert matcher.thresholds == (0.3, 0.6)
    assert matcher.labels == (NEGATIVE, IGNORE, POSITIVE)
    assert matcher.allow_low_quality_matches is False

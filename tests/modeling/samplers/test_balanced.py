"""Tests of BalancedRandomSampler: sample sizes at fixed ratios, never an ignored anchor, argument errors."""
import pytest
import torch

from retinadet.config import get_cfg
from retinadet.modeling import build
from retinadet.modeling.matchers import IGNORE, NEGATIVE, POSITIVE
from retinadet.modeling.samplers import BalancedRandomSampler
from retinadet.registry import SAMPLER_REGISTRY


def _labels(num_pos, num_neg, num_ignore, seed=0):
    """Matcher labels (R,) int8 with the given counts, in a shuffled order."""
    labels = torch.tensor([POSITIVE] * num_pos + [NEGATIVE] * num_neg + [IGNORE] * num_ignore, dtype=torch.int8)
    g = torch.Generator().manual_seed(seed)
    return labels[torch.randperm(labels.numel(), generator=g)]


def _check_draw(labels, pos, neg):
    """Indices are int64, distinct, and of the right label."""
    assert pos.dtype == torch.int64 and neg.dtype == torch.int64
    assert torch.all(labels[pos] == POSITIVE) and torch.all(labels[neg] == NEGATIVE)
    both = torch.cat((pos, neg))
    assert both.unique().numel() == both.numel()


@pytest.mark.parametrize(
    "num_pos, num_neg, batch, fraction, expected",
    [
        (40, 300, 32, 0.5, (16, 16)),  # RPN 1:1
        (100, 1000, 256, 0.25, (64, 192)),  # Fast R-CNN / the paper's 1:3
        (5, 300, 32, 0.5, (5, 27)),  # too few positives: background fills the rest
        (5, 300, 256, 0.25, (5, 251)),
        (100, 10, 32, 0.5, (16, 10)),  # too few negatives: the sample is smaller
        (0, 50, 16, 0.25, (0, 16)),  # no foreground at all
        (7, 0, 16, 0.25, (4, 0)),  # int(16 * 0.25) = 4 foreground at most
        (20, 20, 10, 0.33, (3, 7)),  # int(10 * 0.33) = 3
        (20, 20, 10, 1.0, (10, 0)),
        (20, 20, 10, 0.0, (0, 10)),
    ],
)
def test_sample_sizes(num_pos, num_neg, batch, fraction, expected):
    labels = _labels(num_pos, num_neg, 30)
    torch.manual_seed(0)
    pos, neg = BalancedRandomSampler(batch, fraction)(labels)
    _check_draw(labels, pos, neg)
    assert (pos.numel(), neg.numel()) == expected


def test_ignored_anchors_are_never_drawn():
    # Ignored anchors are the majority; when the batch exceeds the candidates, every positive and
    # negative is returned and nothing else.
    labels = _labels(6, 9, 200, seed=1)
    pos, neg = BalancedRandomSampler(100, 0.5)(labels)
    assert sorted(pos.tolist()) == (labels == POSITIVE).nonzero().squeeze(1).tolist()
    assert sorted(neg.tolist()) == (labels == NEGATIVE).nonzero().squeeze(1).tolist()
    sampler = BalancedRandomSampler(8, 0.5)
    for seed in range(50):
        torch.manual_seed(seed)
        pos, neg = sampler(labels)
        _check_draw(labels, pos, neg)
        assert (pos.numel(), neg.numel()) == (4, 4)


def test_draws_are_uniform_and_follow_the_global_generator():
    labels = _labels(0, 20, 5, seed=2)
    sampler = BalancedRandomSampler(5, 0.25)
    torch.manual_seed(3)
    first = sampler(labels)[1]
    torch.manual_seed(3)
    assert torch.equal(sampler(labels)[1], first)
    counts = torch.zeros(labels.numel())
    for _ in range(800):
        counts[sampler(labels)[1]] += 1
    negatives = labels == NEGATIVE
    assert counts[~negatives].sum() == 0
    # Each negative is drawn with probability 5 / 20: 200 of 800 expected, std ~12.
    assert counts[negatives].min() > 150 and counts[negatives].max() < 250


def test_losses_and_boxes_are_accepted_and_ignored():
    labels = _labels(10, 40, 5, seed=4)
    sampler = BalancedRandomSampler(16, 0.25)
    losses, boxes = torch.rand(labels.numel()), torch.rand(labels.numel(), 4)
    torch.manual_seed(5)
    plain = sampler(labels)
    torch.manual_seed(5)
    with_extras = sampler(labels, losses, boxes)
    assert all(torch.equal(a, b) for a, b in zip(plain, with_extras))
    assert sampler.needs_losses is False


@pytest.mark.parametrize("batch", [0, -4, 2.5, True])
def test_bad_batch_size_is_rejected(batch):
    with pytest.raises(ValueError, match=r"BalancedRandomSampler: batch_size_per_image = .* integer >= 1"):
        BalancedRandomSampler(batch, 0.5)


@pytest.mark.parametrize("fraction", [-0.25, 1.5])
def test_bad_fraction_is_rejected(fraction):
    with pytest.raises(ValueError, match=r"BalancedRandomSampler: positive_fraction = .* must lie in \[0, 1\]\.$"):
        BalancedRandomSampler(64, fraction)


def test_built_from_a_sampler_node():
    cfg = get_cfg()
    node = cfg.MODEL.RETINANET.SAMPLER
    node.BATCH_SIZE_PER_IMAGE, node.POSITIVE_FRACTION = 96, 0.125
    sampler = build(SAMPLER_REGISTRY, "BalancedRandomSampler", cfg, sampler_cfg=node)
    assert isinstance(sampler, BalancedRandomSampler)
    assert (sampler.batch_size_per_image, sampler.positive_fraction) == (96, 0.125)
    pos, neg = sampler(_labels(50, 500, 0))
    assert (pos.numel(), neg.numel()) == (12, 84)

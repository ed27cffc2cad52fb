"""Tests of OHEMSampler on hand-made examples: hardest first, NMS by loss, the foreground share."""
import pytest
import torch

from retinadet.config import get_cfg
from retinadet.modeling import build
from retinadet.modeling.matchers import IGNORE, NEGATIVE, POSITIVE
from retinadet.modeling.samplers import OHEMSampler
from retinadet.registry import SAMPLER_REGISTRY

P, N, I = POSITIVE, NEGATIVE, IGNORE


def _labels(values):
    return torch.tensor(values, dtype=torch.int8)


def _disjoint_boxes(count):
    """``count`` 10 x 10 boxes 20 pixels apart: no two overlap."""
    x = torch.arange(count, dtype=torch.float32) * 20
    return torch.stack((x, torch.zeros(count), x + 10, torch.full((count,), 10.0)), dim=1)


def _sample(sampler, labels, losses, boxes):
    pos, neg = sampler(labels, torch.tensor(losses), torch.as_tensor(boxes, dtype=torch.float32))
    assert pos.dtype == torch.int64 and neg.dtype == torch.int64
    return pos.tolist(), neg.tolist()


def test_hardest_examples_without_overlap():
    labels = _labels([N, P, N, N, P, N, N, P])
    losses = [0.1, 0.5, 0.9, 0.3, 0.05, 0.7, 0.2, 0.6]
    boxes = _disjoint_boxes(8)
    # Loss order: 2 (.9), 5 (.7), 7 (.6), 1 (.5), 3 (.3), 6 (.2), 0 (.1), 4 (.05).
    assert _sample(OHEMSampler(4, -1.0, 0.5), labels, losses, boxes) == ([7, 1], [2, 5])
    assert _sample(OHEMSampler(2, -1.0, 0.5), labels, losses, boxes) == ([], [2, 5])
    # A batch larger than the examples takes them all, hardest first.
    assert _sample(OHEMSampler(100, -1.0, 0.5), labels, losses, boxes) == ([7, 1, 4], [2, 5, 3, 6, 0])


def test_ignored_anchors_are_never_examples():
    labels = _labels([I, N, P, I, N])
    losses = [9.0, 0.2, 0.1, 8.0, 0.3]
    assert _sample(OHEMSampler(3, -1.0, 0.5), labels, losses, _disjoint_boxes(5)) == ([2], [4, 1])


def test_nms_in_decreasing_loss_order():
    a = [0, 0, 10, 10]
    b = [2, 0, 12, 10]  # IoU(a, b) = 80 / 120 = 0.67: suppressed by a
    c = [5, 0, 15, 10]  # IoU(a, c) = 50 / 150 = 0.33; IoU(b, c) = 70 / 130 = 0.54, but b is gone
    d = [0, 0, 10, 5]  # IoU(a, d) = 50 / 100 = 0.5, not above 0.5; IoU(b, d) = 40 / 110; IoU(c, d) = 25 / 125
    e = [100, 100, 110, 110]
    boxes = [a, b, c, d, e]
    labels = _labels([N, N, P, N, N])
    losses = [0.9, 0.8, 0.7, 0.6, 0.1]
    assert _sample(OHEMSampler(10, -1.0, 0.5), labels, losses, boxes) == ([2], [0, 3, 4])
    assert _sample(OHEMSampler(2, -1.0, 0.5), labels, losses, boxes) == ([2], [0])
    # A stricter threshold also drops d (0.5 > 0.45); c stays (0.33).
    assert _sample(OHEMSampler(10, -1.0, 0.45), labels, losses, boxes) == ([2], [0, 4])
    # Threshold 1 suppresses nothing: plain hardest-first.
    assert _sample(OHEMSampler(10, -1.0, 1.0), labels, losses, boxes) == ([2], [0, 1, 3, 4])
    # Reordering the losses changes who suppresses whom: b now first suppresses a and c.
    losses = [0.8, 0.9, 0.7, 0.6, 0.1]
    assert _sample(OHEMSampler(10, -1.0, 0.5), labels, losses, boxes) == ([], [1, 3, 4])


def test_equal_losses_keep_the_lower_index_first():
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10]]
    labels = _labels([N, N, N])
    assert _sample(OHEMSampler(5, -1.0, 0.5), labels, [0.5, 0.5, 0.5], boxes) == ([], [0])
    assert _sample(OHEMSampler(5, -1.0, 1.0), labels, [0.5, 0.5, 0.5], boxes) == ([], [0, 1, 2])


def test_foreground_share():
    # Eight hard negatives, three easy positives, all disjoint.
    labels = _labels([N] * 8 + [P] * 3)
    losses = [0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.1, 0.3, 0.2]
    boxes = _disjoint_boxes(11)
    # No ratio: only the hardest, all background.
    assert _sample(OHEMSampler(8, -1.0, 0.5), labels, losses, boxes) == ([], list(range(8)))
    # 1:3 of 8: int(8 * 0.25) = 2 foreground (the hardest two), 6 background.
    assert _sample(OHEMSampler(8, 0.25, 0.5), labels, losses, boxes) == ([9, 10], [0, 1, 2, 3, 4, 5])
    # 1:1 of 8 with only 3 positives: all 3, then 5 background.
    assert _sample(OHEMSampler(8, 0.5, 0.5), labels, losses, boxes) == ([9, 10, 8], [0, 1, 2, 3, 4])
    # Share 0: background only, even with fewer negatives than the batch.
    assert _sample(OHEMSampler(20, 0.0, 0.5), labels, losses, boxes) == ([], list(range(8)))


def test_foreground_suppressed_by_harder_background():
    labels = _labels([N, P, P, N])
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [50, 0, 60, 10], [100, 0, 110, 10]]
    losses = [0.9, 0.8, 0.1, 0.5]
    # Example 1 overlaps the harder negative 0 (IoU 90 / 110) and is dropped; 2 takes its place.
    assert _sample(OHEMSampler(4, 0.5, 0.5), labels, losses, boxes) == ([2], [0, 3])


def _greedy_nms_reference(boxes, losses, examples, thresh):
    """Examples kept by a plain Python greedy NMS in decreasing loss (ties by index)."""
    order = sorted(examples, key=lambda i: (-losses[i], i))
    kept = []
    for i in order:
        x1, y1, x2, y2 = boxes[i]
        ok = True
        for j in kept:
            u1, v1, u2, v2 = boxes[j]
            inter = max(0.0, min(x2, u2) - max(x1, u1)) * max(0.0, min(y2, v2) - max(y1, v1))
            union = (x2 - x1) * (y2 - y1) + (u2 - u1) * (v2 - v1) - inter
            if inter / union > thresh:
                ok = False
                break
        if ok:
            kept.append(i)
    return kept


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pre_nms_topk", [1, 3, 10, 10_000])
def test_few_candidates_give_the_full_nms_result_without_ratio(seed, pre_nms_topk):
    # Clustered boxes, so the first candidates suppress one another and the candidates must grow.
    g = torch.Generator().manual_seed(seed)
    num = 300
    centres = torch.rand(num, 2, generator=g) * 60
    sizes = torch.rand(num, 2, generator=g) * 30 + 10
    boxes = torch.cat((centres - sizes / 2, centres + sizes / 2), dim=1)
    losses = torch.rand(num, generator=g)
    labels = torch.tensor([N, P, N, I], dtype=torch.int8)[torch.randint(0, 4, (num,), generator=g)]
    examples = (labels != IGNORE).nonzero().squeeze(1).tolist()
    kept = _greedy_nms_reference(boxes.tolist(), losses.tolist(), examples, 0.5)
    assert 20 < len(kept) < len(examples)  # the NMS matters here
    batch = 16
    pos, neg = OHEMSampler(batch, -1.0, 0.5, pre_nms_topk=pre_nms_topk)(labels, losses, boxes)
    expected = kept[:batch]
    assert pos.tolist() == [i for i in expected if labels[i] == P]
    assert neg.tolist() == [i for i in expected if labels[i] == N]
    # With a ratio and every example a candidate, the quota is applied to the same NMS order.
    pos, neg = OHEMSampler(batch, 0.25, 0.5, pre_nms_topk=10_000)(labels, losses, boxes)
    kept_pos = [i for i in kept if labels[i] == P]
    assert pos.tolist() == kept_pos[:4]
    assert neg.tolist() == [i for i in kept if labels[i] == N][: batch - min(4, len(kept_pos))]


def test_foreground_candidates_beyond_the_hardest():
    # 50 disjoint hard negatives and 2 easy positives: with pre_nms_topk 4 the positives are still
    # candidates when a foreground share is set.
    labels = _labels([N] * 50 + [P, P])
    losses = torch.cat((torch.linspace(1.0, 0.5, 50), torch.tensor([0.01, 0.02])))
    boxes = _disjoint_boxes(52)
    pos, neg = OHEMSampler(8, 0.25, 0.5, pre_nms_topk=4)(labels, losses, boxes)
    assert pos.tolist() == [51, 50] and neg.tolist() == list(range(6))


def test_no_examples_give_empty_samples():
    pos, neg = OHEMSampler(8, 0.25, 0.5)(_labels([I, I]), torch.rand(2), _disjoint_boxes(2))
    assert pos.numel() == 0 and neg.numel() == 0 and pos.dtype == torch.int64


def test_missing_or_misshapen_inputs_are_rejected():
    sampler = OHEMSampler(8, -1.0, 0.5)
    labels = _labels([N, P, N])
    with pytest.raises(ValueError, match="needs the per-example losses"):
        sampler(labels)
    with pytest.raises(ValueError, match=r"losses \(R,\) and boxes \(R, 4\); got \(3,\), \(2,\) and \(3, 4\)"):
        sampler(labels, torch.rand(2), _disjoint_boxes(3))
    assert sampler.needs_losses is True


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size_per_image": 0}, r"batch_size_per_image = 0 must be an integer >= 1"),
        ({"positive_fraction": 1.5}, r"positive_fraction = 1.5 must lie in \[0, 1\], or < 0 for no ratio"),
        ({"nms_thresh": 1.2}, r"nms_thresh = 1.2 must lie in \[0, 1\]"),
        ({"nms_thresh": -0.1}, r"nms_thresh = -0.1 must lie in \[0, 1\]"),
        ({"pre_nms_topk": 0}, r"pre_nms_topk = 0 must be an integer >= 1"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    args = {"batch_size_per_image": 128, "positive_fraction": -1.0, "nms_thresh": 0.5, **kwargs}
    with pytest.raises(ValueError, match="OHEMSampler: " + message):
        OHEMSampler(**args)


def test_built_from_the_retinanet_sampler_node():
    cfg = get_cfg()
    node = cfg.MODEL.RETINANET.SAMPLER
    node.BATCH_SIZE_PER_IMAGE, node.POSITIVE_FRACTION, node.NMS_THRESH = 128, -1.0, 0.7
    sampler = build(SAMPLER_REGISTRY, "OHEMSampler", cfg, sampler_cfg=node)
    assert isinstance(sampler, OHEMSampler)
    assert (sampler.batch_size_per_image, sampler.positive_fraction, sampler.nms_thresh) == (128, -1.0, 0.7)

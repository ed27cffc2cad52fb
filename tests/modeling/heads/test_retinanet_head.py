"""Tests of RetinaNetHead: the paper's initialisation, weight sharing and the output layout."""
from pathlib import Path

import pytest
import torch
from torch import nn

from retinadet.config import get_cfg
from retinadet.modeling import build_model
from retinadet.modeling.heads import RetinaNetHead
from retinadet.modeling.shape_spec import ShapeSpec
from retinadet.utils.synthetic import make_synthetic_batch

REPO = Path(__file__).resolve().parents[3]
QUICK_CONFIG = str(REPO / "configs" / "quick" / "retinanet_R_18_synthetic.yaml")
CHANNELS = 64
LEVELS = [ShapeSpec(CHANNELS, s) for s in (8, 16, 32, 64, 128)]


def _head(num_classes=3, num_anchors=9, **kwargs) -> RetinaNetHead:
    return RetinaNetHead(LEVELS, num_classes=num_classes, num_anchors=num_anchors, **kwargs)


def _convs(head: RetinaNetHead):
    """(name, conv) of every conv of the head."""
    return [(n, m) for n, m in head.named_modules() if isinstance(m, nn.Conv2d)]


def _initial_scores(prior_prob: float) -> torch.Tensor:
    """Sigmoid scores of a freshly built quick model on a synthetic batch (all anchors, all classes).

    The features are the real FPN outputs of a randomly initialised ResNet-18 (std ~0.5-3), so the
    subnets see inputs of the scale they see at the start of training.
    """
    cfg = get_cfg()
    cfg.merge_from_file(QUICK_CONFIG)
    # The paper's head (no norm in the subnets), whatever the quick config uses.
    cfg.merge_from_list(["MODEL.HEAD.PRIOR_PROB", str(prior_prob), "MODEL.HEAD.NORM", ""])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    batch = make_synthetic_batch(2, 128, 160, num_classes=3, seed=0)
    with torch.no_grad():
        logits, _, _ = model.forward_features(model.preprocess_image(batch))
    return torch.cat(logits, dim=1).sigmoid()


@pytest.mark.parametrize("prior_prob", [0.01, 0.1])
def test_initial_foreground_probability_is_the_prior(prior_prob):
    # Paper Sec. 4 (Initialization): b = -log((1 - pi) / pi) makes every anchor start at
    # confidence ~pi. A bias of -log(1 / pi) would give pi / (1 + pi): 0.0909 for pi = 0.1.
    scores = _initial_scores(prior_prob)
    assert scores.shape[-1] == 3 and scores.shape[1] > 1000
    assert abs(scores.mean().item() - prior_prob) < 1e-3
    # Not only on average: the weights (std 0.01) keep every anchor close to the prior.
    assert (scores - prior_prob).abs().max() < 0.1 * prior_prob


def test_conv_weights_are_normal_0_01_and_biases_zero_except_class_prior():
    torch.manual_seed(0)
    head = _head(num_classes=3, num_anchors=9)
    convs = _convs(head)
    # 4 + 4 subnet convs, cls_score, bbox_pred.
    assert len(convs) == 10
    for name, conv in convs:
        w = conv.weight.detach()
        # >= 9 * 64 * 27 = 15552 samples: the sample std of N(0, 0.01) is within ~1% of 0.01.
        assert abs(w.std().item() - 0.01) < 0.001, name
        assert abs(w.mean().item()) < 0.001, name
        if name != "cls_score":
            assert torch.equal(conv.bias.detach(), torch.zeros_like(conv.bias)), name
    # -log((1 - 0.01) / 0.01) = -log(99) = -4.59512 (hand computation).
    bias = head.cls_score.bias.detach()
    assert bias.shape == (9 * 3,)
    assert torch.allclose(bias, torch.full_like(bias, -4.59512), atol=1e-5)


def test_prior_prob_0_1_bias():
    head = _head(prior_prob=0.1)
    # -log(0.9 / 0.1) = -log(9) = -2.19722 (hand computation).
    assert torch.allclose(head.cls_score.bias.detach(), torch.tensor(-2.19722), atol=1e-5)


@pytest.mark.parametrize("prior_prob", [0.0, 1.0, -0.5, 1.5])
def test_bad_prior_prob_raises(prior_prob):
    with pytest.raises(ValueError, match="prior_prob"):
        _head(prior_prob=prior_prob)


def test_unequal_level_channels_raise():
    with pytest.raises(ValueError, match="channels"):
        RetinaNetHead([ShapeSpec(64, 8), ShapeSpec(32, 16)], num_classes=3, num_anchors=9)


def test_weights_shared_across_levels():
    torch.manual_seed(0)
    head = _head()
    g = torch.Generator().manual_seed(1)
    levels = [torch.randn(2, CHANNELS, h, w, generator=g) for h, w in ((8, 12), (4, 6), (2, 3))]
    with torch.no_grad():
        logits, deltas = head(levels)
        for i, level in enumerate(levels):
            alone_logits, alone_deltas = head([level])
            # The same modules serve every level: a level's output does not depend on its position.
            assert torch.equal(logits[i], alone_logits[0])
            assert torch.equal(deltas[i], alone_deltas[0])
    # One set of parameters whatever the number of levels.
    three = RetinaNetHead(LEVELS[:3], num_classes=3, num_anchors=9)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(three) == count(head)
    # 8 subnet convs of 64x64x3x3 + 64, cls_score 27x64x3x3 + 27, bbox_pred 36x64x3x3 + 36.
    assert count(head) == 8 * (64 * 64 * 9 + 64) + (27 * 64 * 9 + 27) + (36 * 64 * 9 + 36)


def test_subnets_do_not_share_parameters():
    torch.manual_seed(0)
    head = _head()
    cls_params = {id(p) for p in head.cls_subnet.parameters()}
    box_params = {id(p) for p in head.bbox_subnet.parameters()}
    assert len(cls_params) == len(box_params) == 8
    assert cls_params.isdisjoint(box_params)
    for k in (0, 2, 4, 6):
        a, b = head.cls_subnet[k].weight, head.bbox_subnet[k].weight
        assert a.data_ptr() != b.data_ptr()
        assert not torch.equal(a, b)  # drawn independently


def test_output_shapes_and_location_major_order():
    torch.manual_seed(0)
    num_classes, num_anchors = 3, 9
    head = _head(num_classes=num_classes, num_anchors=num_anchors)
    g = torch.Generator().manual_seed(2)
    sizes = [(3, 5), (2, 3)]
    levels = [torch.randn(2, CHANNELS, h, w, generator=g) for h, w in sizes]
    with torch.no_grad():
        logits, deltas = head(levels)
        for level, (h, w), lg, dl in zip(levels, sizes, logits, deltas):
            assert lg.shape == (2, h * w * num_anchors, num_classes)
            assert dl.shape == (2, h * w * num_anchors, 4)
            raw_cls = head.cls_score(head.cls_subnet(level))  # (N, A*K, H, W)
            raw_box = head.bbox_pred(head.bbox_subnet(level))  # (N, A*4, H, W)
            for n in range(2):
                for y in range(h):
                    for x in range(w):
                        for a in range(num_anchors):
                            r = (y * w + x) * num_anchors + a
                            for k in range(num_classes):
                                assert lg[n, r, k] == raw_cls[n, a * num_classes + k, y, x]
                            for j in range(4):
                                assert dl[n, r, j] == raw_box[n, a * 4 + j, y, x]


def test_group_norm_variant_layout():
    head = _head(norm="GN")
    for subnet in (head.cls_subnet, head.bbox_subnet):
        assert len(subnet) == 12
        for k in range(4):
            conv, norm, relu = subnet[3 * k], subnet[3 * k + 1], subnet[3 * k + 2]
            assert isinstance(conv, nn.Conv2d) and conv.bias is None  # the norm's bias replaces it
            assert isinstance(norm, nn.GroupNorm) and norm.num_channels == CHANNELS
            assert isinstance(relu, nn.ReLU)
    # The state-dict names torchvision's v2 GN head converts to (norms at 1, 4, 7, 10).
    norm_keys = {k for k in head.state_dict() if k.startswith("cls_subnet.") and "weight" in k}
    assert norm_keys == {f"cls_subnet.{i}.weight" for i in (0, 1, 3, 4, 6, 7, 9, 10)}
    with torch.no_grad():
        logits, deltas = head([torch.randn(1, CHANNELS, 4, 4)])
    assert logits[0].shape == (1, 16 * 9, 3) and torch.isfinite(logits[0]).all()


def test_plain_variant_layout():
    head = _head()
    for subnet in (head.cls_subnet, head.bbox_subnet):
        assert len(subnet) == 8
        assert [type(m) for m in subnet] == [nn.Conv2d, nn.ReLU] * 4

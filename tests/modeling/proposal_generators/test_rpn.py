"""Tests of the RPN: proposal filtering and losses computed by hand, the config path and errors."""
import math

import pytest
import torch

from retinadet.config import get_cfg
from retinadet.modeling.anchor_generators import DefaultAnchorGenerator
from retinadet.modeling.box_coders import DeltaXYWHBoxCoder
from retinadet.modeling.build import build
from retinadet.modeling.heads import StandardRPNHead
from retinadet.modeling.matchers import IoUMatcher
from retinadet.modeling.proposal_generators import RPN
from retinadet.modeling.samplers import BalancedRandomSampler
from retinadet.modeling.samplers.ohem import OHEMSampler
from retinadet.modeling.shape_spec import ShapeSpec
from retinadet.registry import PROPOSAL_GENERATOR_REGISTRY
from retinadet.structures import ImageList

LEVELS = [ShapeSpec(8, 4), ShapeSpec(8, 8), ShapeSpec(8, 16)]


def _rpn(**kwargs) -> RPN:
    args = dict(
        in_features=["p2", "p3", "p4"],
        head=StandardRPNHead(LEVELS, num_anchors=1),
        anchor_generator=DefaultAnchorGenerator([4, 8, 16], [16, 32, 64], scales=[1.0], aspect_ratios=[1.0]),
        matcher=IoUMatcher((0.3, 0.7), ("NEGATIVE", "IGNORE", "POSITIVE"), allow_low_quality_matches=True),
        sampler=BalancedRandomSampler(256, 0.5),
        box_coder=DeltaXYWHBoxCoder(),
        pre_nms_topk=(3, 2),
        post_nms_topk=(3, 3),
        nms_thresh=0.7,
        min_size=1.0,
    )
    args.update(kwargs)
    return RPN(**args)


def _level_outputs():
    """Three levels of hand-placed anchors (one image) with their logits and deltas."""
    anchors = [
        torch.tensor([[10.0, 10, 50, 50], [12, 10, 52, 50], [0, 0, 5, 5], [0, 0, 5, 5]]),
        torch.tensor([[120.0, 0, 140, 10], [10, 10, 50, 50], [90, 90, 130, 130]]),
        torch.tensor([[30.0, 30, 30.5, 60], [60, 60, 120, 80]]),
    ]
    logits = [torch.tensor([[3.0, 2.0, 1.0, 0.0]]), torch.tensor([[4.0, 2.5, 1.5]]), torch.tensor([[5.0, -1.0]])]
    deltas = [torch.zeros(1, len(a), 4) for a in anchors]
    deltas[0][0, 0, 0] = 0.1  # anchor a0 moves right by 0.1 x its width 40: [14, 10, 54, 50]
    return logits, deltas, anchors


def test_proposals_by_hand_eval():
    """Test top-k 2 per level, decode, clip, min size, NMS per level, best 3 kept.

    Level 0: top-2 are a0 (3, decoded to [14, 10, 54, 50]) and a1 (2), which NMS removes (IoU 0.905
    with a0). Level 1: top-2 are b0' = [120, 0, 140, 10] (4), clipped to zero width and dropped, and
    b1 = [10, 10, 50, 50] (2.5), kept although it is a0's box: NMS is per level. Level 2: c0 (5) is
    0.5 wide (< min_size 1) and dropped; c1 (-1) is clipped to [60, 60, 100, 80].
    """
    rpn = _rpn().eval()
    logits, deltas, anchors = _level_outputs()
    (out,) = rpn.predict_proposals(logits, deltas, anchors, [(100, 100)])
    expected = torch.tensor([[14.0, 10, 54, 50], [10, 10, 50, 50], [60, 60, 100, 80]])
    torch.testing.assert_close(out["boxes"], expected)
    torch.testing.assert_close(out["objectness_logits"], torch.tensor([3.0, 2.5, -1.0]))


def test_proposals_by_hand_train_values():
    """Training: top-3 per level adds a2 = [0, 0, 5, 5] (1) and [90, 90, 130, 130] (1.5), clipped to
    [90, 90, 100, 100]; the best 3 after NMS are a0, the level-1 copy, and that clipped box."""
    rpn = _rpn().train()
    logits, deltas, anchors = _level_outputs()
    (out,) = rpn.predict_proposals(logits, deltas, anchors, [(100, 100)])
    expected = torch.tensor([[14.0, 10, 54, 50], [10, 10, 50, 50], [90, 90, 100, 100]])
    torch.testing.assert_close(out["boxes"], expected)
    torch.testing.assert_close(out["objectness_logits"], torch.tensor([3.0, 2.5, 1.5]))


def test_proposals_clip_to_each_image_size():
    rpn = _rpn().eval()
    logits, deltas, anchors = _level_outputs()
    logits = [torch.cat([x, x]) for x in logits]
    deltas = [torch.cat([x, x]) for x in deltas]
    wide, narrow = rpn.predict_proposals(logits, deltas, anchors, [(100, 100), (100, 60)])
    assert len(wide["boxes"]) == 3
    # In a 60-wide image the level-2 box [60, 60, 120, 80] is clipped to zero width and dropped.
    torch.testing.assert_close(narrow["boxes"], torch.tensor([[14.0, 10, 54, 50], [10, 10, 50, 50]]))


@pytest.mark.parametrize("min_size, widths", [(1e-3, [0.001]), (0.0, [0.001, 0.0005])])
def test_min_size_drops_sides_below_it_and_empty_boxes(min_size, widths):
    """Widths 1e-3, 5e-4 and 0: torchvision's 1e-3 keeps only the first; 0 still drops the empty box."""
    rpn = _rpn(min_size=min_size, pre_nms_topk=(5, 5)).eval()
    anchors = [torch.tensor([[0.0, 0, 0.001, 10], [20, 0, 20.0005, 10], [40, 0, 40, 10]])]
    (out,) = rpn.predict_proposals([torch.tensor([[3.0, 2.0, 1.0]])], [torch.zeros(1, 3, 4)], anchors, [(50, 50)])
    torch.testing.assert_close(out["boxes"][:, 2] - out["boxes"][:, 0], torch.tensor(widths), atol=1e-6, rtol=0)


# Loss fixture: one level of 4 anchors in a 100 x 100 image, gt [0, 0, 20, 20].
# a0 = gt (IoU 1, POSITIVE); a1 IoU 400 / 600 = 0.67 (IGNORE); a2 IoU 0 and a3 IoU 100 / 700 = 0.14
# (NEGATIVE). A second image has no gt: its 4 anchors are all NEGATIVE.
LOSS_ANCHORS = torch.tensor([[0.0, 0, 20, 20], [0, 0, 20, 30], [50, 50, 70, 70], [15, 0, 35, 20]])
LOSS_LOGITS = torch.tensor([[2.0, 5.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
A0_DELTAS = torch.tensor([0.1, -0.2, 0.3, 0.0])  # the target of a0 is (0, 0, 0, 0)


def _loss_inputs():
    deltas = torch.zeros(2, 4, 4)
    deltas[0, 0] = A0_DELTAS
    deltas[0, 1] = 9.0  # ignored anchor: must not count
    targets = [{"boxes": torch.tensor([[0.0, 0, 20, 20]])}, {"boxes": torch.zeros(0, 4)}]
    return [LOSS_LOGITS.clone().requires_grad_()], [deltas.requires_grad_()], [LOSS_ANCHORS], targets


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


@pytest.mark.parametrize("beta, box_sum", [(0.0, 0.6), (0.5, 0.5 * (0.01 + 0.04 + 0.09) / 0.5)])
def test_losses_by_hand(beta, box_sum):
    """Every non-ignored anchor fits the 256 sample: 3 + 4 = 7 sampled anchors normalise both losses."""
    rpn = _rpn(smooth_l1_beta=beta, loss_weight=2.0)
    logits, deltas, anchors, targets = _loss_inputs()
    losses = rpn.losses(logits, deltas, anchors, targets)
    # BCE: -log(sigmoid(x)) = softplus(-x) for the positive, softplus(x) for negatives.
    cls_sum = _softplus(-2.0) + _softplus(-1.0) + _softplus(0.5) + 4 * math.log(2.0)
    assert losses["loss_rpn_cls"].item() == pytest.approx(2.0 * cls_sum / 7, rel=1e-6)
    assert losses["loss_rpn_loc"].item() == pytest.approx(2.0 * box_sum / 7, rel=1e-6)
    sum(losses.values()).backward()
    assert logits[0].grad[0, 1] == 0 and torch.count_nonzero(deltas[0].grad[0, 1]) == 0  # ignored anchor
    assert torch.count_nonzero(deltas[0].grad[1]) == 0  # no foreground in the second image
    assert torch.count_nonzero(deltas[0].grad[0, 0]) == 3  # L1/smooth L1 of a0's non-zero deltas


def test_losses_with_ohem_sampler():
    """OHEM keeps the 2 highest per-anchor losses of each image: a3 (softplus(0.5) = 0.97) and a0
    (softplus(-2) + L1 0.6 = 0.73) before a2 (0.31); in the second image two of the equal log 2."""
    rpn = _rpn(sampler=OHEMSampler(2, -1.0, nms_thresh=1.0))
    logits, deltas, anchors, targets = _loss_inputs()
    losses = rpn.losses(logits, deltas, anchors, targets)
    cls_sum = _softplus(0.5) + _softplus(-2.0) + 2 * math.log(2.0)
    assert losses["loss_rpn_cls"].item() == pytest.approx(cls_sum / 4, rel=1e-6)
    assert losses["loss_rpn_loc"].item() == pytest.approx(0.6 / 4, rel=1e-6)


def test_forward_train_and_eval():
    torch.manual_seed(0)
    rpn = _rpn(pre_nms_topk=(50, 20), post_nms_topk=(30, 10))
    images = ImageList(torch.zeros(2, 3, 64, 64), [(64, 64), (48, 64)])
    features = {f"p{k}": torch.randn(2, 8, 64 // 2**k, 64 // 2**k) for k in (2, 3, 4)}
    targets = [{"boxes": torch.tensor([[4.0, 4, 30, 30]])}, {"boxes": torch.tensor([[10.0, 10, 40, 40]])}]
    proposals, losses = rpn.train()(images, features, targets)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc"}
    assert all(torch.isfinite(v) and v.requires_grad for v in losses.values())
    assert [len(p["boxes"]) for p in proposals] == [30, 30]
    assert not proposals[0]["boxes"].requires_grad and not proposals[0]["objectness_logits"].requires_grad
    assert proposals[1]["boxes"][:, 3].max() <= 48  # clipped to the second image's height
    proposals, losses = rpn.eval()(images, features)
    assert losses == {} and [len(p["boxes"]) for p in proposals] == [10, 10]
    for p in proposals:
        assert torch.all(p["objectness_logits"][:-1] >= p["objectness_logits"][1:])
    objectness, deltas, anchors = rpn.forward_features(images, features)
    assert [o.shape for o in objectness] == [(2, 256), (2, 64), (2, 16)]
    assert [d.shape for d in deltas] == [(2, 256, 4), (2, 64, 4), (2, 16, 4)]
    assert [a.shape for a in anchors] == [(256, 4), (64, 4), (16, 4)]
    with pytest.raises(ValueError, match="needs targets"):
        rpn.train()(images, features)


def test_from_config():
    cfg = get_cfg()
    cfg.merge_from_list([
        "MODEL.RPN.IN_FEATURES", "['p2', 'p3', 'p4']", "MODEL.ANCHOR_GENERATOR.SIZES", "[16, 32, 64]",
        "MODEL.ANCHOR_GENERATOR.SCALES", "[1.0]", "MODEL.RPN.SMOOTH_L1_BETA", "0.25",
        "MODEL.RPN.PRE_NMS_TOPK_TEST", "500", "MODEL.RPN.SAMPLER.BATCH_SIZE_PER_IMAGE", "128",
    ])
    shapes = {"p2": LEVELS[0], "p3": LEVELS[1], "p4": LEVELS[2], "p5": ShapeSpec(8, 32)}
    rpn = build(PROPOSAL_GENERATOR_REGISTRY, "RPN", cfg, input_shape=shapes)
    assert rpn.in_features == ["p2", "p3", "p4"]
    assert rpn.head.num_anchors == 3 and rpn.anchor_generator.strides == [4, 8, 16]
    assert rpn.matcher.thresholds == (0.3, 0.7) and rpn.matcher.allow_low_quality_matches
    assert rpn.sampler.batch_size_per_image == 128 and rpn.sampler.positive_fraction == 0.5
    assert rpn.pre_nms_topk == (2000, 500) and rpn.post_nms_topk == (2000, 1000)
    assert rpn.smooth_l1_beta == 0.25 and rpn.nms_thresh == 0.7 and rpn.min_size == 0.0


@pytest.mark.parametrize(
    "opts, message",
    [
        (["MODEL.RPN.IN_FEATURES", "['p2', 'p9']"], "MODEL.RPN.IN_FEATURES names \\['p9'\\]"),
        (["MODEL.RPN.NMS_THRESH", "1.5"], "nms_thresh = 1.5"),
        (["MODEL.RPN.POST_NMS_TOPK_TEST", "0"], "post_nms_topk = \\(2000, 0\\)"),
        (["MODEL.RPN.MIN_SIZE", "-1.0"], "min_size = -1.0"),
    ],
)
def test_bad_config(opts, message):
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.RPN.IN_FEATURES", "['p2', 'p3', 'p4']", "MODEL.ANCHOR_GENERATOR.SIZES",
                         "[16, 32, 64]"] + opts)
    shapes = {"p2": LEVELS[0], "p3": LEVELS[1], "p4": LEVELS[2]}
    with pytest.raises(ValueError, match=message):
        build(PROPOSAL_GENERATOR_REGISTRY, "RPN", cfg, input_shape=shapes)

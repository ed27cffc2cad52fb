"""StandardROIHeads: built from the config, equal to torchvision's RoIHeads with the same weights."""
import math

import pytest
import torch
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor as TVPredictor
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign

from retinadet.config import get_cfg
from retinadet.modeling import ShapeSpec, build
from retinadet.modeling.roi_heads import StandardROIHeads
from retinadet.ops import box_iou
from retinadet.registry import ROI_HEAD_REGISTRY
from retinadet.structures import ImageList

K = 3
C = 8
FC = 32
NAMES = ["p2", "p3", "p4", "p5"]
NECK_SHAPE = {f"p{l}": ShapeSpec(C, 2**l) for l in range(2, 7)}  # the neck also makes p6
H, W = 128, 160


def _cfg(*opts):
    cfg = get_cfg()
    cfg.merge_from_list([
        "MODEL.ROI_HEADS.NUM_CLASSES", K, "MODEL.ROI_BOX_HEAD.FC_DIM", FC, *opts,
    ])
    return cfg


def _torchvision_cfg(*opts):
    """torchvision's choices: ROIAlign v1 with 2 samples, smooth L1 beta 1/9, min box side 1e-2."""
    return _cfg(
        "MODEL.ROI_BOX_HEAD.POOLER_ALIGNED", False, "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", 2,
        "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA", 1 / 9, "MODEL.ROI_HEADS.MIN_BOX_SIZE_TEST", 1e-2, *opts,
    )


def _build(cfg) -> StandardROIHeads:
    return build(ROI_HEAD_REGISTRY, cfg.MODEL.ROI_HEADS.NAME, cfg, input_shape=NECK_SHAPE)


def _torchvision_twin(ours: StandardROIHeads, batch_size: int, positive_fraction: float) -> RoIHeads:
    """torchvision's RoIHeads with our weights, its background row/deltas in front."""
    head = TwoMLPHead(C * 7 * 7, FC)
    predictor = TVPredictor(FC, K + 1)
    with torch.no_grad():
        head.fc6.load_state_dict(ours.box_head.fc1.state_dict())
        head.fc7.load_state_dict(ours.box_head.fc2.state_dict())
        cls, box = ours.box_predictor.cls_score, ours.box_predictor.bbox_pred
        predictor.cls_score.weight.copy_(torch.cat([cls.weight[K:], cls.weight[:K]]))
        predictor.cls_score.bias.copy_(torch.cat([cls.bias[K:], cls.bias[:K]]))
        # torchvision's background deltas are decoded then dropped: any values do.
        predictor.bbox_pred.weight[4:].copy_(box.weight)
        predictor.bbox_pred.bias[4:].copy_(box.bias)
    pooler = MultiScaleRoIAlign(NAMES, 7, 2)
    return RoIHeads(pooler, head, predictor, 0.5, 0.5, batch_size, positive_fraction, None, 0.05, 0.5, 100)


def _spread_weights(model: StandardROIHeads, g: torch.Generator) -> None:
    """Weights giving region-to-region differences in scores and boxes (fresh ones give ~uniform ones)."""
    with torch.no_grad():
        model.box_predictor.cls_score.weight.copy_(torch.randn(K + 1, FC, generator=g) * 0.5)
        model.box_predictor.cls_score.bias.copy_(torch.tensor([0.5, 0.0, -0.5, 1.0]))
        model.box_predictor.bbox_pred.weight.copy_(torch.randn(4 * K, FC, generator=g) * 0.2)


def _features(g: torch.Generator, batch: int = 2):
    return {name: torch.randn(batch, C, math.ceil(H / s.stride), math.ceil(W / s.stride), generator=g)
            for name, s in NECK_SHAPE.items()}


def _boxes(n: int, g: torch.Generator, height: int = H, width: int = W, max_side: float = 100.0) -> torch.Tensor:
    wh = torch.rand(n, 2, generator=g) * (max_side - 6) + 6
    xy = torch.rand(n, 2, generator=g) * (torch.tensor([width, height]) - wh)
    return torch.cat([xy, xy + wh], dim=1)


def _jitter(boxes: torch.Tensor, n: int, g: torch.Generator, height: int = H, width: int = W) -> torch.Tensor:
    """n boxes near the given ones (many overlap them at IoU >= 0.5), clipped to the image."""
    base = boxes[torch.randint(0, len(boxes), (n,), generator=g)]
    side = (base[:, 2:] - base[:, :2]).repeat(1, 2)
    out = base + torch.randn(n, 4, generator=g) * 0.15 * side
    out[:, 2:] = torch.maximum(out[:, 2:], out[:, :2] + 2)
    return torch.stack([out[:, 0].clamp(0, width), out[:, 1].clamp(0, height),
                        out[:, 2].clamp(0, width), out[:, 3].clamp(0, height)], dim=1)


def _batch(g: torch.Generator, image_sizes=((H, W), (120, 150)), num_proposals=(300, 200)):
    images = ImageList(torch.zeros(len(image_sizes), 3, H, W), list(image_sizes))
    targets, proposals = [], []
    for (h, w), n in zip(image_sizes, num_proposals):
        gt = _boxes(4, g, h, w)
        targets.append({"boxes": gt, "labels": torch.randint(0, K, (4,), generator=g)})
        boxes = torch.cat([_jitter(gt, n // 2, g, h, w), _boxes(n - n // 2, g, h, w)])
        proposals.append({"boxes": boxes, "objectness_logits": torch.randn(n, generator=g)})
    return images, proposals, targets


def test_parameter_names_and_shapes():
    model = _build(_cfg())
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {
        "box_head.fc1.weight": (FC, C * 49), "box_head.fc1.bias": (FC,),
        "box_head.fc2.weight": (FC, FC), "box_head.fc2.bias": (FC,),
        "box_predictor.cls_score.weight": (K + 1, FC), "box_predictor.cls_score.bias": (K + 1,),
        "box_predictor.bbox_pred.weight": (4 * K, FC), "box_predictor.bbox_pred.bias": (4 * K,),
    }
    # detectron2's FC init: U(-sqrt(3 / fan_in), sqrt(3 / fan_in)), zero bias.
    bound = math.sqrt(3 / (C * 49))
    w = model.box_head.fc1.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert model.box_head.fc1.bias.abs().max() == 0


def test_inference_equals_torchvision_roi_heads():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    ours = _build(_torchvision_cfg()).eval()
    _spread_weights(ours, g)
    reference = _torchvision_twin(ours, 512, 0.25).eval()
    images, proposals, _ = _batch(g)
    features = _features(g)
    with torch.no_grad():
        detections, losses = ours(images, features, proposals)
        expected, _ = reference(
            {k: features[k] for k in NAMES}, [p["boxes"] for p in proposals], images.image_sizes
        )
    assert losses == {}
    for det, ref in zip(detections, expected):
        assert len(det["boxes"]) == len(ref["boxes"]) >= 20
        torch.testing.assert_close(det["boxes"], ref["boxes"], rtol=0, atol=1e-4)
        torch.testing.assert_close(det["scores"], ref["scores"], rtol=0, atol=1e-5)
        assert torch.equal(det["labels"], ref["labels"] - 1)
    assert set(torch.cat([d["labels"] for d in detections]).tolist()) == set(range(K))


@pytest.mark.parametrize("batch_size, fraction", [(512, 0.25), (32, 0.25)])
def test_training_losses_equal_torchvision_roi_heads(batch_size, fraction):
    # With 32 per image the random draw decides which proposals enter the loss: both sides must
    # draw the same ones from the same seed.
    g = torch.Generator().manual_seed(1)
    ours = _build(_torchvision_cfg(
        "MODEL.ROI_HEADS.SAMPLER.BATCH_SIZE_PER_IMAGE", batch_size,
        "MODEL.ROI_HEADS.SAMPLER.POSITIVE_FRACTION", fraction,
    )).train()
    _spread_weights(ours, g)
    reference = _torchvision_twin(ours, batch_size, fraction).train()
    images, proposals, targets = _batch(g)
    features = _features(g)
    tv_targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
    torch.manual_seed(123)
    detections, losses = ours(images, features, proposals, targets)
    torch.manual_seed(123)
    _, expected = reference(
        {k: features[k] for k in NAMES}, [p["boxes"] for p in proposals], images.image_sizes, tv_targets
    )
    assert detections == []
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    torch.testing.assert_close(losses["loss_cls"], expected["loss_classifier"], rtol=0, atol=1e-6)
    torch.testing.assert_close(losses["loss_box_reg"], expected["loss_box_reg"], rtol=0, atol=1e-6)
    assert losses["loss_box_reg"] > 0
    # Another seed draws other proposals, so the small-batch losses would differ.
    if batch_size == 32:
        torch.manual_seed(7)
        _, other = ours(images, features, proposals, targets)
        assert abs(other["loss_cls"].item() - losses["loss_cls"].item()) > 1e-4
    (losses["loss_cls"] + losses["loss_box_reg"]).backward()
    assert ours.box_head.fc1.weight.grad.abs().sum() > 0
    assert ours.box_predictor.bbox_pred.weight.grad.abs().sum() > 0


def _sample(model, proposals, targets):
    return model.label_and_sample_proposals([p["boxes"] for p in proposals], targets)


def test_sampler_takes_512_with_at_most_a_quarter_foreground():
    g = torch.Generator().manual_seed(2)
    model = _build(_cfg()).train()
    gt = _boxes(5, g)
    labels = torch.tensor([0, 1, 2, 0, 1])
    many = torch.cat([_jitter(gt, 1500, g), _boxes(1000, g, max_side=8)])  # far more than 128 foreground
    few_fg = torch.cat([_jitter(gt, 30, g), _boxes(1200, g, max_side=8)])  # tiny boxes: background
    images_targets = [{"boxes": gt, "labels": labels}] * 2
    boxes, classes, matched = _sample(model, [{"boxes": many}, {"boxes": few_fg}], images_targets)

    for b, c, m in zip(boxes, classes, matched):
        assert len(b) == 512
        iou = box_iou(b, gt).max(dim=1)
        fg = c < K
        assert torch.equal(fg, iou.values >= 0.5)
        # Foreground regions carry their best gt's label and box.
        assert torch.equal(c[fg], labels[iou.indices[fg]])
        assert torch.equal(m[fg], gt[iou.indices[fg]])
    assert int((classes[0] < K).sum()) == 128
    # Second image: all its foreground (< 128) and background for the rest.
    candidates = torch.cat([few_fg, gt])
    num_fg = int((box_iou(candidates, gt).max(dim=1).values >= 0.5).sum())
    assert num_fg < 128 and int((classes[1] < K).sum()) == num_fg


def test_gt_boxes_join_the_proposals_when_asked():
    gt = torch.tensor([[10.0, 10.0, 50.0, 60.0], [70.0, 20.0, 120.0, 100.0]])
    targets = [{"boxes": gt, "labels": torch.tensor([2, 0])}]
    empty = [{"boxes": torch.zeros(0, 4)}]
    boxes, classes, _ = _sample(_build(_cfg()).train(), empty, targets)
    assert torch.equal(boxes[0], gt) and classes[0].tolist() == [2, 0]
    boxes, classes, _ = _sample(_build(_cfg("MODEL.ROI_HEADS.PROPOSAL_APPEND_GT", False)).train(), empty, targets)
    assert boxes[0].shape == (0, 4) and classes[0].shape == (0,)


def test_image_without_objects_samples_background_only():
    g = torch.Generator().manual_seed(3)
    model = _build(_cfg()).train()
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    boxes, classes, matched = _sample(model, [{"boxes": _boxes(40, g)}], targets)
    assert len(boxes[0]) == 40 and (classes[0] == K).all() and matched[0].shape == (40, 4)


def test_proposals_in_crowd_regions_are_not_background():
    model = _build(_cfg()).train()
    crowd = torch.tensor([[0.0, 0.0, 60.0, 60.0]])
    inside = torch.tensor([[5.0, 5.0, 30.0, 30.0], [20.0, 20.0, 55.0, 50.0]])
    outside = torch.tensor([[90.0, 70.0, 130.0, 110.0]])
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "crowd_boxes": crowd}]
    boxes, classes, _ = _sample(model, [{"boxes": torch.cat([inside, outside])}], targets)
    assert torch.equal(boxes[0], outside) and classes[0].tolist() == [K]


def test_inference_with_no_proposals():
    g = torch.Generator().manual_seed(4)
    model = _build(_cfg()).eval()
    images = ImageList(torch.zeros(2, 3, H, W), [(H, W), (H, W)])
    proposals = [{"boxes": torch.zeros(0, 4), "objectness_logits": torch.zeros(0)},
                 {"boxes": _boxes(5, g), "objectness_logits": torch.zeros(5)}]
    with torch.no_grad():
        detections, _ = model(images, _features(g), proposals)
    assert detections[0]["boxes"].shape == (0, 4) and detections[0]["labels"].dtype == torch.int64
    assert len(detections[1]["boxes"]) > 0  # fresh weights: every class scores ~1 / (K + 1) > 0.05


@pytest.mark.parametrize(
    "opts, message",
    [
        (["MODEL.ROI_HEADS.IN_FEATURES", ["p2", "p9"]], r"names \['p9'\].*produces \['p2', 'p3'"),
        (["MODEL.ROI_HEADS.IN_FEATURES", ["p2", "p4"]], r"IN_FEATURES = \['p2', 'p4'\] \(strides \[4, 16\]\)"),
        (["MODEL.ROI_HEADS.IN_FEATURES", []], "IN_FEATURES is empty"),
        (["MODEL.ROI_HEADS.IOU_LABELS", ["NEGATIVE", "IGNORE", "POSITIVE"]], r"IOU_LABELS.*len\(labels\)"),
        (["MODEL.ROI_HEADS.IOU_THRESHOLDS", [1.5]], r"IOU_THRESHOLDS = \[1.5\]"),
        (["MODEL.ROI_HEADS.SAMPLER.NAME", ""], "SAMPLER.NAME is empty"),
        (["MODEL.ROI_HEADS.SAMPLER.POSITIVE_FRACTION", 1.5], r"MODEL.ROI_HEADS.SAMPLER: .*positive_fraction = 1.5"),
        (["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 1.5], r"1.5 \(MODEL.ROI_HEADS.SCORE_THRESH_TEST\)"),
        (["MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE", 0], "DETECTIONS_PER_IMAGE"),
        (["MODEL.ROI_HEADS.NUM_CLASSES", 0], r"num_classes = 0 \(MODEL.ROI_HEADS.NUM_CLASSES\)"),
        (["MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS", [10.0, 10.0, 5.0]], "BBOX_REG_WEIGHTS"),
        (["MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 0], "output_size = 0"),
        (["MODEL.ROI_BOX_HEAD.NUM_FC", -1], r"NUM_FC\) must be an integer >= 0"),
        (["MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA", -0.1], "SMOOTH_L1_BETA"),
    ],
)
def test_bad_config_values_are_named(opts, message):
    with pytest.raises(ValueError, match=message):
        _build(_cfg(*opts))


def test_unknown_box_head_lists_the_registered_ones():
    with pytest.raises(KeyError, match="FastRCNNFCHead"):
        _build(_cfg("MODEL.ROI_BOX_HEAD.NAME", "FastRCNNFCHeed"))


def test_bad_targets_are_named():
    g = torch.Generator().manual_seed(5)
    model = _build(_cfg()).train()
    images, proposals, targets = _batch(g)
    targets[1]["labels"] = torch.tensor([0, 1, K, 0])
    with pytest.raises(ValueError, match=r"span \[0, 3\].*\[0, 3\) \(MODEL.ROI_HEADS.NUM_CLASSES = 3\)"):
        model(images, _features(g), proposals, targets)
    with pytest.raises(ValueError, match="one target per image"):
        model(images, _features(g), proposals, None)

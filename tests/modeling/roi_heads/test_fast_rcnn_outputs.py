"""Tests of the Fast R-CNN outputs: losses and detections against torchvision with background moved."""
import math

import pytest
import torch
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss

from retinadet.modeling.box_coders import DeltaXYWHBoxCoder
from retinadet.modeling.roi_heads import FastRCNNPredictor, fast_rcnn_inference, fast_rcnn_losses

K = 5
CODER = DeltaXYWHBoxCoder(weights=(10.0, 10.0, 5.0, 5.0), scale_clamp=math.log(1000.0 / 16))


def _to_torchvision_logits(logits: torch.Tensor) -> torch.Tensor:
    """(R, K + 1) background last -> background first."""
    return torch.cat([logits[:, -1:], logits[:, :-1]], dim=1)


def _to_torchvision_deltas(deltas: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """(R, 4K) -> (R, 4(K + 1)) with ``background (R, 4)`` in front (torchvision decodes it, then drops it)."""
    return torch.cat([background, deltas], dim=1)


def _proposals(n: int, size: float, g: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * size * 0.8
    wh = torch.rand(n, 2, generator=g) * size * 0.4 + 4
    return torch.cat([xy, xy + wh], dim=1)


def _sampled_batch(g: torch.Generator, num: int = 40):
    logits = torch.randn(num, K + 1, generator=g) * 2
    deltas = torch.randn(num, 4 * K, generator=g) * 0.5
    classes = torch.randint(0, K + 1, (num,), generator=g)  # K = background
    classes[:3] = K  # some background for sure
    classes[3:6] = torch.tensor([0, 2, 4])  # and some foreground
    proposals = _proposals(num, 200.0, g)
    gt_boxes = proposals + torch.randn(num, 4, generator=g) * 5
    gt_boxes[:, 2:] = torch.maximum(gt_boxes[:, 2:], gt_boxes[:, :2] + 1)
    return logits, deltas, classes, proposals, gt_boxes


def test_losses_equal_torchvision_fastrcnn_loss_with_background_moved():
    g = torch.Generator().manual_seed(0)
    logits, deltas, classes, proposals, gt_boxes = _sampled_batch(g)
    ours = fast_rcnn_losses(logits, deltas, classes, proposals, gt_boxes, CODER, smooth_l1_beta=1 / 9)

    tv_labels = (classes + 1) % (K + 1)  # background K -> 0, class k -> k + 1
    targets = CODER.encode(gt_boxes, proposals)
    noise = torch.randn(logits.shape[0], 4, generator=g)  # background deltas: never used
    tv_cls, tv_box = fastrcnn_loss(
        _to_torchvision_logits(logits), _to_torchvision_deltas(deltas, noise), [tv_labels], [targets]
    )
    torch.testing.assert_close(ours["loss_cls"], tv_cls, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours["loss_box_reg"], tv_box, rtol=0, atol=1e-6)
    assert ours["loss_box_reg"] > 0.01


def test_losses_by_hand_with_l1():
    g = torch.Generator().manual_seed(1)
    logits, deltas, classes, proposals, gt_boxes = _sampled_batch(g, num=12)
    ours = fast_rcnn_losses(logits, deltas, classes, proposals, gt_boxes, CODER, smooth_l1_beta=0.0)

    ce = sum(-torch.log_softmax(logits[i], 0)[classes[i]] for i in range(12)) / 12
    box = 0.0
    for i in range(12):
        c = int(classes[i])
        if c == K:
            continue
        target = CODER.encode(gt_boxes[i : i + 1], proposals[i : i + 1])[0]
        box = box + (deltas[i, 4 * c : 4 * c + 4] - target).abs().sum()
    torch.testing.assert_close(ours["loss_cls"], ce, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours["loss_box_reg"], box / 12, rtol=0, atol=1e-6)


def test_class_agnostic_loss_uses_the_single_box():
    g = torch.Generator().manual_seed(2)
    logits, deltas, classes, proposals, gt_boxes = _sampled_batch(g, num=10)
    agnostic = deltas[:, :4].clone()
    ours = fast_rcnn_losses(logits, agnostic, classes, proposals, gt_boxes, CODER, smooth_l1_beta=0.0)
    fg = classes < K
    targets = CODER.encode(gt_boxes[fg], proposals[fg])
    torch.testing.assert_close(ours["loss_box_reg"], (agnostic[fg] - targets).abs().sum() / 10)


def test_no_sampled_regions_gives_zero_losses_with_gradients():
    logits = torch.zeros(0, K + 1, requires_grad=True)
    deltas = torch.zeros(0, 4 * K, requires_grad=True)
    out = fast_rcnn_losses(logits, deltas, torch.zeros(0, dtype=torch.long), torch.zeros(0, 4), torch.zeros(0, 4),
                           CODER, 0.0)
    assert out["loss_cls"].item() == 0.0 and out["loss_box_reg"].item() == 0.0
    (out["loss_cls"] + out["loss_box_reg"]).backward()
    assert logits.grad is not None and deltas.grad is not None


def _torchvision_postprocessor(score_thresh=0.05, nms_thresh=0.5, detections=100) -> RoIHeads:
    return RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, score_thresh, nms_thresh, detections)


@pytest.mark.parametrize("detections", [100, 7])
def test_inference_equals_torchvision_postprocess_detections(detections):
    g = torch.Generator().manual_seed(3)
    image_sizes = [(180, 200), (150, 240)]
    proposals = [_proposals(120, 190.0, g), _proposals(90, 150.0, g)]
    # Many overlapping proposals and a spread of scores: some pass the threshold, NMS removes some.
    logits = torch.randn(210, K + 1, generator=g) * 3
    deltas = torch.randn(210, 4 * K, generator=g) * 2
    background = torch.randn(210, 4, generator=g)
    tv_boxes, tv_scores, tv_labels = _torchvision_postprocessor(detections=detections).postprocess_detections(
        _to_torchvision_logits(logits), _to_torchvision_deltas(deltas, background), proposals, image_sizes
    )
    ours = fast_rcnn_inference(logits, deltas, proposals, image_sizes, CODER, 0.05, 0.5, 1e-2, detections)
    for i, det in enumerate(ours):
        assert det["labels"].dtype == torch.int64
        assert len(det["boxes"]) == len(tv_boxes[i]) > min(detections, 5) - 1
        torch.testing.assert_close(det["boxes"], tv_boxes[i], rtol=0, atol=1e-4)
        torch.testing.assert_close(det["scores"], tv_scores[i], rtol=0, atol=1e-6)
        assert torch.equal(det["labels"], tv_labels[i] - 1)
        assert (det["scores"][1:] <= det["scores"][:-1]).all()
        h, w = image_sizes[i]
        assert det["boxes"][:, 0::2].max() <= w and det["boxes"][:, 1::2].max() <= h
    # The filters did something: more candidates above the threshold than detections.
    probs = logits.softmax(-1)[:, :K]
    assert (probs[:120] > 0.05).sum() > len(ours[0]["boxes"])


def test_min_box_size_and_score_threshold_filter():
    # One proposal, two classes above the threshold: class 0 decodes to a 4 px box, class 1 to 40 px.
    proposals = [torch.tensor([[10.0, 10.0, 50.0, 50.0]])]
    logits = torch.tensor([[2.0, 2.0, -5.0, -5.0, -5.0, 0.0]])
    deltas = torch.zeros(1, 4 * K)
    deltas[0, 2:4] = 5.0 * math.log(0.1)  # class 0: width and height x 0.1
    probs = logits.softmax(-1)[0]
    out = fast_rcnn_inference(logits, deltas, proposals, [(100, 100)], CODER, 0.05, 0.5, 5.0, 100)[0]
    assert out["labels"].tolist() == [1]
    torch.testing.assert_close(out["boxes"], proposals[0])
    torch.testing.assert_close(out["scores"], probs[1:2])
    out = fast_rcnn_inference(logits, deltas, proposals, [(100, 100)], CODER, 0.05, 0.5, 0.0, 100)[0]
    assert sorted(out["labels"].tolist()) == [0, 1]
    torch.testing.assert_close(out["boxes"][out["labels"] == 0], torch.tensor([[28.0, 28.0, 32.0, 32.0]]))
    # A threshold above both scores leaves nothing.
    out = fast_rcnn_inference(logits, deltas, proposals, [(100, 100)], CODER, float(probs[0]) + 1e-3, 0.5, 0.0, 100)[0]
    assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,)


def test_class_agnostic_inference_gives_every_class_the_same_box():
    g = torch.Generator().manual_seed(4)
    proposals = [_proposals(6, 100.0, g)]
    logits = torch.zeros(6, K + 1)  # every class scores 1 / (K + 1) > 0.05
    deltas = torch.randn(6, 4, generator=g) * 0.3
    out = fast_rcnn_inference(logits, deltas, proposals, [(120, 120)], CODER, 0.05, 0.5, 0.0, 1000)[0]
    expected = CODER.decode(deltas, proposals[0]).clamp(0, 120)
    for label in range(K):
        boxes = out["boxes"][out["labels"] == label]
        assert len(boxes) >= 1
        assert all(torch.isclose(b, expected, atol=1e-5).all(dim=1).any() for b in boxes)


def test_empty_image_gives_empty_detections():
    out = fast_rcnn_inference(torch.zeros(0, K + 1), torch.zeros(0, 4 * K), [torch.zeros(0, 4)], [(50, 50)],
                              CODER, 0.05, 0.5, 0.0, 100)
    assert out[0]["boxes"].shape == (0, 4) and out[0]["scores"].shape == (0,) and out[0]["labels"].shape == (0,)


def test_predictor_layout_and_initialisation():
    torch.manual_seed(0)
    p = FastRCNNPredictor(256, 80)
    assert p.cls_score.weight.shape == (81, 256) and p.bbox_pred.weight.shape == (320, 256)
    assert abs(p.cls_score.weight.std().item() - 0.01) < 1e-3
    assert abs(p.bbox_pred.weight.std().item() - 0.001) < 1e-4
    assert p.cls_score.bias.abs().max() == 0 and p.bbox_pred.bias.abs().max() == 0
    assert FastRCNNPredictor(256, 80, cls_agnostic_bbox_reg=True).bbox_pred.weight.shape == (4, 256)
    logits, deltas = p(torch.randn(3, 256, 1, 1))
    assert logits.shape == (3, 81) and deltas.shape == (3, 320)
    with pytest.raises(ValueError, match="num_classes = 0"):
        FastRCNNPredictor(256, 0)

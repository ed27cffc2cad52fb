"""Parity with torchvision's fasterrcnn_resnet50_fpn: same weights, same input, same numbers."""
import pytest
import torch
from torchvision.models.detection.rpn import concat_box_prediction_layers

from retinadet.benchmark.torchvision_reference import PARITY_FASTER_RCNN, randomised_reference
from retinadet.structures import ImageList
from tests.modeling.meta_arch.torchvision_parity_checks import assert_same_detections, converted_pair

CONFIG = "configs/torchvision/faster_rcnn_R_50_FPN.yaml"
H, W = 256, 320  # multiples of 32: torchvision pads nothing and, with min/max size = H/W, resizes nothing
TOL = 1e-3


@pytest.fixture(scope="module")
def models():
    """torchvision's fasterrcnn_resnet50_fpn (91 classes: background 0 and COCO ids 1..90) as built for its
    pretrained weights (FrozenBN, three trainable stages, FPN on layer1-4 with LastLevelMaxPool;
    PARITY_FASTER_RCNN: random frozen norms, damped residual branches, objectness and class scores spread
    as after training), and ours holding its converted weights."""
    return converted_pair(randomised_reference(PARITY_FASTER_RCNN, H, W), CONFIG)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(2)
    return [torch.randint(0, 256, (3, H, W), generator=g).float() for _ in range(2)]


@pytest.fixture(scope="module")
def rpn_outputs(models, images):
    """Both RPNs' raw outputs and proposals, each on its own model's features of the same images."""
    reference, ours = models
    with torch.no_grad():
        image_list, _ = reference.transform([im / 255.0 for im in images])
        ref_features = reference.backbone(image_list.tensors)
        ref_levels = list(ref_features.values())
        ref_objectness, ref_deltas = reference.rpn.head(ref_levels)
        ref_anchors = reference.rpn.anchor_generator(image_list, ref_levels)
        ref_boxes, ref_scores = reference.rpn(image_list, ref_features)

        batch = ours.preprocess_image([{"image": im} for im in images])
        features = ours.forward_features(batch)
        objectness, deltas, anchors = ours.proposal_generator.forward_features(batch, features)
        proposals, _ = ours.proposal_generator(batch, features)
    reference_out = (ref_objectness, ref_deltas, ref_anchors, ref_boxes, ref_scores, image_list.image_sizes)
    return reference_out, (objectness, deltas, anchors, proposals, batch)


def test_rpn_objectness_deltas_and_anchors_match(rpn_outputs):
    (ref_objectness, ref_deltas, ref_anchors, _, _, _), (objectness, deltas, anchors, _, _) = rpn_outputs
    # P2-P6 of 256 x 320: 64x80, 32x40, 16x20, 8x10, 4x5 locations, 3 anchors each.
    sizes = [3 * h * w for h, w in ((64, 80), (32, 40), (16, 20), (8, 10), (4, 5))]
    assert [o.shape for o in objectness] == [(2, r) for r in sizes]
    assert [d.shape for d in deltas] == [(2, r, 4) for r in sizes]
    for level, (ref_o, ref_d, o, d) in enumerate(zip(ref_objectness, ref_deltas, objectness, deltas)):
        # torchvision's own flattening of one level: (N, R, 1) logits, (N * R, 4) deltas.
        ref_o_flat, ref_d_flat = concat_box_prediction_layers([ref_o], [ref_d])
        assert (o.reshape(-1) - ref_o_flat.reshape(-1)).abs().max() < TOL, level
        assert (d.reshape(-1, 4) - ref_d_flat).abs().max() < TOL, level
        assert o.std() > 1.0  # spread objectness: top-k and NMS do not choose among near-ties
    assert torch.equal(torch.cat(anchors), ref_anchors[0])
    assert torch.equal(torch.cat(anchors), ref_anchors[1])


def test_proposals_match_in_order(rpn_outputs):
    (_, _, _, ref_boxes, ref_scores, image_sizes), (_, _, _, proposals, batch) = rpn_outputs
    assert batch.image_sizes == image_sizes == [(H, W), (H, W)]
    for ref_b, ref_s, prop in zip(ref_boxes, ref_scores, proposals):
        assert len(ref_b) == 1000  # rpn_post_nms_top_n_test: enough survive NMS to fill it
        assert prop["boxes"].shape == ref_b.shape
        assert (prop["boxes"] - ref_b).abs().max() < TOL
        assert (prop["objectness_logits"].sigmoid() - ref_s).abs().max() < TOL
        assert torch.all(prop["objectness_logits"][:-1] >= prop["objectness_logits"][1:])


def test_proposals_equal_on_equal_features(models, rpn_outputs):
    """Given torchvision's own head outputs, our proposal filtering returns its proposals exactly."""
    reference, ours = models
    (ref_objectness, ref_deltas, ref_anchors, ref_boxes, ref_scores, image_sizes), (*_, batch) = rpn_outputs
    objectness, deltas = [], []
    for ref_o, ref_d in zip(ref_objectness, ref_deltas):
        o, d = concat_box_prediction_layers([ref_o], [ref_d])
        objectness.append(o.view(2, -1))
        deltas.append(d.view(2, -1, 4))
    sizes = [o.shape[1] for o in objectness]
    anchors = list(ref_anchors[0].split(sizes))
    proposals = ours.proposal_generator.predict_proposals(objectness, deltas, anchors, image_sizes)
    for ref_b, ref_s, prop in zip(ref_boxes, ref_scores, proposals):
        assert torch.equal(prop["boxes"], ref_b)
        assert torch.equal(prop["objectness_logits"].sigmoid(), ref_s)


def test_detections_match(models, images):
    reference, ours = models
    with torch.no_grad():
        expected = reference([im / 255.0 for im in images])
        actual = ours([{"image": im, "height": H, "width": W} for im in images])
    for exp, act in zip(expected, actual):
        assert len(exp["boxes"]) == 100  # box_detections_per_img
        assert len(exp["labels"].unique()) > 1
        assert exp["labels"].min() >= 1
        # torchvision's label L (1..90) is ours L - 1.
        assert_same_detections(act, {**exp, "labels": exp["labels"] - 1}, tol=TOL)


def test_rpn_training_proposals_and_losses_match(models, images):
    """Training mode on the same features: the train top-k values, and the losses when every
    non-ignored anchor is sampled (a sample size above the anchor count makes both samplers
    deterministic)."""
    reference, ours = models
    gt = [
        torch.tensor([[10.0, 20.0, 120.0, 150.0], [200.0, 30.0, 300.0, 90.0], [40.0, 180.0, 90.0, 250.0]]),
        torch.tensor([[60.0, 60.0, 260.0, 200.0]]),
    ]
    rpn = ours.proposal_generator
    saved = (reference.rpn.fg_bg_sampler.batch_size_per_image, rpn.sampler.batch_size_per_image)
    reference.rpn.fg_bg_sampler.batch_size_per_image = 10**6
    rpn.sampler.batch_size_per_image = 10**6
    reference.rpn.train()
    rpn.train()
    try:
        with torch.no_grad():
            image_list, _ = reference.transform([im / 255.0 for im in images])
            ref_features = reference.backbone(image_list.tensors)
            ref_boxes, ref_losses = reference.rpn(image_list, ref_features, [{"boxes": b} for b in gt])
            # Our RPN on torchvision's own pyramid, under our names.
            features = dict(zip(["p2", "p3", "p4", "p5", "p6"], ref_features.values()))
            batch = ImageList(image_list.tensors, image_list.image_sizes)
            proposals, losses = rpn(batch, features, [{"boxes": b} for b in gt])
    finally:
        reference.rpn.fg_bg_sampler.batch_size_per_image, rpn.sampler.batch_size_per_image = saved
        reference.rpn.eval()
        rpn.eval()
    for ref_b, prop in zip(ref_boxes, proposals):
        assert len(ref_b) > 1000  # more than the test-time 1000: the train top-k values are in use
        assert torch.equal(prop["boxes"], ref_b)
    for ours_key, ref_key in (("loss_rpn_cls", "loss_objectness"), ("loss_rpn_loc", "loss_rpn_box_reg")):
        ref = ref_losses[ref_key]
        assert ref > 0
        assert abs(losses[ours_key].item() - ref.item()) / ref.item() < 1e-4, (ours_key, losses, ref_losses)

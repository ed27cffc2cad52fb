"""Parity with torchvision's retinanet_resnet50_fpn: same weights, same input, same numbers."""
import pytest
import torch

from retinadet.benchmark.torchvision_reference import PARITY_RETINANET, TORCHVISION_NUM_CLASSES, randomised_reference
from tests.modeling.meta_arch.torchvision_parity_checks import assert_same_detections, converted_pair

CONFIG = "configs/torchvision/retinanet_R_50_FPN.yaml"
NUM_CLASSES = TORCHVISION_NUM_CLASSES
H, W = 256, 320  # multiples of 32, so torchvision pads nothing; P7 has 3 columns (stride 320 // 3)


@pytest.fixture(scope="module")
def models():
    """torchvision's retinanet_resnet50_fpn as built for its pretrained weights (FrozenBN, three trainable
    stages; PARITY_RETINANET: random frozen norms, damped residual branches, class logits spread across
    anchors), and ours holding its converted weights."""
    return converted_pair(randomised_reference(PARITY_RETINANET, H, W), CONFIG)


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(2)
    images = [torch.randint(0, 256, (3, H, W), generator=g).float() for _ in range(2)]
    boxes = [
        torch.tensor([[10.0, 20.0, 120.0, 150.0], [200.0, 30.0, 300.0, 90.0], [40.0, 180.0, 90.0, 250.0]]),
        torch.tensor([[60.0, 60.0, 260.0, 200.0]]),
    ]
    labels = [torch.tensor([3, 17, 90]), torch.tensor([5])]
    return images, boxes, labels


def _reference_dense(reference, images):
    image_list, _ = reference.transform([im / 255.0 for im in images])
    features = list(reference.backbone(image_list.tensors).values())
    head = reference.head(features)
    anchors = reference.anchor_generator(image_list, features)
    return head, anchors


def test_head_outputs_and_anchors_match(models, batch):
    reference, ours = models
    images, _, _ = batch
    with torch.no_grad():
        ref_head, ref_anchors = _reference_dense(reference, images)
        logits, deltas, anchors = ours.forward_features(ours.preprocess_image([{"image": im} for im in images]))
    logits, deltas = torch.cat(logits, dim=1), torch.cat(deltas, dim=1)
    # R = 9 * (32*40 + 16*20 + 8*10 + 4*5 + 2*3) = 9 * 1706 = 15354 anchors per image.
    assert logits.shape == ref_head["cls_logits"].shape == (2, 15354, NUM_CLASSES)
    assert (logits - ref_head["cls_logits"]).abs().max() < 1e-4
    assert (deltas - ref_head["bbox_regression"]).abs().max() < 1e-4
    assert logits.std() > 0.5  # the randomised biases spread the logits: the comparison is not vacuous
    assert torch.equal(torch.cat(anchors), ref_anchors[0])
    assert torch.equal(torch.cat(anchors), ref_anchors[1])


def test_detections_match(models, batch):
    reference, ours = models
    images, _, _ = batch
    with torch.no_grad():
        expected = reference([im / 255.0 for im in images])
        actual = ours([{"image": im, "height": H, "width": W} for im in images])
    for exp, act in zip(expected, actual):
        assert len(exp["boxes"]) == 300  # DETECTIONS_PER_IMAGE of the parity config
        assert len(exp["labels"].unique()) > 1
        assert_same_detections(act, exp)


def test_losses_match(models, batch):
    reference, ours = models
    images, boxes, labels = batch
    reference.train()
    ours.train()
    try:
        expected = reference(
            [im / 255.0 for im in images], [{"boxes": b, "labels": l} for b, l in zip(boxes, labels)]
        )
        actual = ours([{"image": im, "boxes": b, "labels": l} for im, b, l in zip(images, boxes, labels)])
    finally:
        reference.eval()
        ours.eval()
    for ours_key, ref_key in (("loss_cls", "classification"), ("loss_box_reg", "bbox_regression")):
        ref = expected[ref_key]
        assert ref > 0
        assert abs(actual[ours_key].item() - ref.item()) / ref.item() < 1e-4, (ours_key, actual, expected)

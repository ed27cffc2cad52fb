"""retinadet.benchmark.torchvision_reference: torchvision's models built as its factories build them, set up
like ours, randomised, converted into ours and wrapped behind our model contract."""
import pytest
import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn, retinanet_resnet50_fpn
from torchvision.ops.misc import FrozenBatchNorm2d

from retinadet.benchmark import BenchmarkError
from retinadet.benchmark.model_size import count_parameters
from retinadet.benchmark.torchvision_reference import (
    BUSY_RETINANET,
    PARITY_FASTER_RCNN,
    PARITY_RETINANET,
    TorchvisionFasterRCNN,
    TorchvisionRetinaNet,
    build_torchvision_faster_rcnn,
    build_torchvision_model,
    build_torchvision_retinanet,
    frozen_stage_names,
    ours_with_weights_of,
    randomised_reference,
    torchvision_images,
)
from retinadet.engine import DefaultTrainer
from tests.benchmark.benchmark_checks import RCNN_TORCHVISION, TORCHVISION, frozen_config


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("build, factory", [(build_torchvision_retinanet, retinanet_resnet50_fpn),
                                            (build_torchvision_faster_rcnn, fasterrcnn_resnet50_fpn)],
                         ids=["retinanet", "faster_rcnn"])
def test_builders_make_the_factories_models(build, factory):
    # With FREEZE_AT 0 and BatchNorm ours is exactly what torchvision's factory builds without weights, weight
    # for weight from the same seed; the defaults are its pretrained set-up (FrozenBN, 3 trainable stages).
    torch.manual_seed(0)
    ours = build(91, freeze_at=0, all_frozen_bn=False)
    torch.manual_seed(0)
    theirs = factory(weights=None, weights_backbone=None, num_classes=91)
    assert _same_state(ours, theirs)
    assert [p.requires_grad for p in ours.parameters()] == [p.requires_grad for p in theirs.parameters()]
    body = build(91).backbone.body
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert not body.conv1.weight.requires_grad and not body.layer1[0].conv1.weight.requires_grad
    assert body.layer2[0].conv1.weight.requires_grad


def test_frozen_stages_follow_freeze_at():
    assert frozen_stage_names(0) == []
    assert frozen_stage_names(2) == ["conv1", "bn1", "layer1"]
    assert frozen_stage_names(5) == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]
    # BatchNorm (our MODEL.RESNETS.NORM "BN"): frozen norms in the frozen stages only.
    body = build_torchvision_retinanet(freeze_at=2, all_frozen_bn=False).backbone.body
    assert isinstance(body.bn1, FrozenBatchNorm2d) and isinstance(body.layer1[0].bn1, FrozenBatchNorm2d)
    assert isinstance(body.layer2[0].bn1, torch.nn.BatchNorm2d) and body.layer2[0].bn1.weight.requires_grad


def test_torchvision_model_is_set_up_like_ours():
    # configs/torchvision/ builds our model with torchvision's architecture: with the backbone frozen
    # the same way (FrozenBN everywhere, stem and layer1 frozen by FREEZE_AT 2) both train the same
    # number of parameters and hold the same total.
    cfg = frozen_config(TORCHVISION)
    torch.manual_seed(0)
    reference = TorchvisionRetinaNet(cfg)
    ours = DefaultTrainer.build_model(cfg)

    def counts(model):
        params = list(model.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    assert counts(reference) == counts(ours)
    body = reference.model.backbone.body
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in body.modules()) == 53  # 1 stem + 16 blocks x 3 + 4 downsample
    assert not body.conv1.weight.requires_grad and not body.layer1[0].conv1.weight.requires_grad
    assert body.layer2[0].conv1.weight.requires_grad
    assert reference.model.head.classification_head.num_classes == 91
    # Its transform is told the batch's sides, so a 64 x 96 image is scaled by exactly 1.
    reference.eval()
    with torch.no_grad():
        reference([{"image": torch.zeros(3, 64, 96, dtype=torch.uint8)}])
    assert (reference.model.transform.min_size, reference.model.transform.max_size) == ((64,), 96)


def test_torchvision_faster_rcnn_is_set_up_like_ours():
    # The torchvision config: the same frozen stages; torchvision's box predictor also has deltas for its
    # background class, 1024 x 4 weights + 4 biases more, and nothing else differs.
    cfg = frozen_config(RCNN_TORCHVISION)
    torch.manual_seed(0)
    reference = build_torchvision_model(cfg)
    assert isinstance(reference, TorchvisionFasterRCNN)
    ours = DefaultTrainer.build_model(cfg)
    theirs, mine = count_parameters(reference), count_parameters(ours)
    assert theirs["total"] - mine["total"] == theirs["trainable"] - mine["trainable"] == 1024 * 4 + 4
    body = reference.model.backbone.body
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert not body.layer1[0].conv1.weight.requires_grad and body.layer2[0].conv1.weight.requires_grad
    # K = 90 classes plus torchvision's background 0; our label k is its k + 1.
    assert reference.model.roi_heads.box_predictor.cls_score.out_features == 91 and reference.label_offset == 1
    assert reference.model.transform.min_size == (800,)


def test_torchvision_images_are_rgb_floats():
    # A BGR config (COCO) feeds B=0, G=51, R=255; torchvision gets R, G, B scaled to 0-1: 1.0, 0.2, 0.0.
    batch = [{"image": torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 4)}]
    assert torchvision_images(batch, bgr=True)[0][:, 1, 3].tolist() == pytest.approx([1.0, 0.2, 0.0])
    assert torchvision_images(batch, bgr=False)[0][:, 0, 0].tolist() == pytest.approx([0.0, 0.2, 1.0])


def test_the_counterpart_renames_retinanets_losses_and_shifts_rcnn_labels():
    cfg = frozen_config(TORCHVISION)
    torch.manual_seed(0)
    reference = TorchvisionRetinaNet(cfg).train()
    batch = [{"image": torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8),
              "boxes": torch.tensor([[4.0, 4.0, 40.0, 50.0]]), "labels": torch.tensor([3])}]
    assert set(reference(batch)) == {"loss_cls", "loss_box_reg"}
    with pytest.raises(BenchmarkError, match="MODEL.RESNETS.DEPTH 18 \\(needs 50\\)"):
        build_torchvision_model(frozen_config(TORCHVISION, "MODEL.RESNETS.DEPTH", "18"))


@pytest.mark.parametrize("recipe, damped", [(PARITY_RETINANET, True), (BUSY_RETINANET, False)],
                         ids=["parity", "busy"])
def test_randomised_retinanet_references(recipe, damped):
    model = randomised_reference(recipe, 128, 160, seed=3)
    assert (model.transform.min_size, model.transform.max_size) == ((128,), 160)
    body = model.backbone.body
    # Frozen norms: running variance and weight in [0.75, 1.25), the residual branches' last weight x 0.2.
    var, weight = body.layer1[0].bn1.running_var, body.layer1[0].bn3.weight
    assert 0.75 <= float(var.min()) and float(var.max()) < 1.25 and float(var.std()) > 0.05
    assert (0.15 <= float(weight.min()) and float(weight.max()) < 0.25) if damped else 0.75 <= float(weight.min())
    bias = model.head.classification_head.cls_logits.bias.detach()
    low, high = (-3.0, 1.0) if recipe is PARITY_RETINANET else (-10.0, -4.0)
    assert low <= float(bias.min()) and float(bias.max()) < high and float(bias.max() - bias.min()) > 3.0
    # The same seed gives the same model; another seed another one.
    assert _same_state(model, randomised_reference(recipe, 128, 160, seed=3))
    assert not _same_state(model, randomised_reference(recipe, 128, 160, seed=4))


@torch.no_grad()
def test_randomised_faster_rcnn_reference_spreads_its_scores():
    model = randomised_reference(PARITY_FASTER_RCNN, 128, 160, seed=0)
    torch.manual_seed(0)
    plain = build_torchvision_faster_rcnn(min_size=128, max_size=160)
    objectness, cls_score = model.rpn.head.cls_logits, model.roi_heads.box_predictor.cls_score
    assert -2.0 <= float(objectness.bias.min()) and float(objectness.bias.max()) < 2.0
    assert 0.0 <= float(cls_score.bias.min()) and float(cls_score.bias.max()) < 4.0
    # The weights as built, scaled: objectness x 300, RPN deltas x 10, class scores x 100, box deltas x 10.
    assert torch.equal(objectness.weight, plain.rpn.head.cls_logits.weight * 300.0)
    assert torch.equal(model.rpn.head.bbox_pred.weight, plain.rpn.head.bbox_pred.weight * 10.0)
    assert torch.equal(cls_score.weight, plain.roi_heads.box_predictor.cls_score.weight * 100.0)
    assert torch.equal(model.roi_heads.box_predictor.bbox_pred.weight,
                       plain.roi_heads.box_predictor.bbox_pred.weight * 10.0)


def test_ours_with_weights_of_loads_every_key():
    reference = randomised_reference(BUSY_RETINANET, 128, 160)
    ours, report = ours_with_weights_of(reference, TORCHVISION)
    assert not report["missing"] and not report["unexpected"] and not report["skipped_shape"]
    # The class-output bias holds the reference's spread values.
    assert torch.equal(ours.head.cls_score.bias, reference.head.classification_head.cls_logits.bias)
    with pytest.raises(TypeError, match="RetinaNet or FasterRCNN; got Linear"):
        ours_with_weights_of(torch.nn.Linear(1, 1), TORCHVISION)

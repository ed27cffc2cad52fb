"""RetinaNet trained with a sampler (1:3 random sampling, OHEM) instead of the focal loss on every anchor."""
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from retinadet.config import get_cfg
from retinadet.modeling import build_model
from retinadet.modeling.losses import (
    AlphaBalancedCrossEntropy,
    SigmoidFocalLoss,
    SigmoidFocalLossStar,
    sigmoid_focal_loss,
    sigmoid_focal_loss_star,
)
from retinadet.modeling.matchers import IGNORE, POSITIVE
from retinadet.modeling.meta_arch.dense_losses import (
    _box_loss_sums,
    _cls_loss_sums,
    match_anchors,
    per_anchor_cls_losses,
)
from retinadet.modeling.meta_arch.input_checks import check_targets
from retinadet.modeling.samplers import BalancedRandomSampler, OHEMSampler
from retinadet.utils.synthetic import make_synthetic_batch
from retinadet.utils.testing import QUICK_NUM_CLASSES as NUM_CLASSES
from retinadet.utils.testing import (
    hand_matched,
    quick_batch,
    quick_model,
    spread_scores,
)

SHAPES_TINY = str(Path(__file__).resolve().parents[3] / "configs" / "quick" / "retinanet_R_18_shapes_tiny.yaml")
CE = ["MODEL.CLS_LOSS.NAME", "SigmoidFocalLoss", "MODEL.CLS_LOSS.GAMMA", 0.0, "MODEL.CLS_LOSS.ALPHA", -1.0]
# The paper's Table 1d rows: the focal loss, 1:3 random sampling with CE, OHEM (no ratio) with CE.
ABLATION = {
    "FL": [],
    "1:3 CE": [
        "MODEL.RETINANET.SAMPLER.NAME", "BalancedRandomSampler",
        "MODEL.RETINANET.SAMPLER.BATCH_SIZE_PER_IMAGE", 256,
        "MODEL.RETINANET.SAMPLER.POSITIVE_FRACTION", 0.25,
    ] + CE,
    "OHEM": [
        "MODEL.RETINANET.SAMPLER.NAME", "OHEMSampler",
        "MODEL.RETINANET.SAMPLER.BATCH_SIZE_PER_IMAGE", 128,
        "MODEL.RETINANET.SAMPLER.POSITIVE_FRACTION", -1.0,
        "MODEL.RETINANET.SAMPLER.NMS_THRESH", 0.5,
        "MODEL.CLS_LOSS.NAME", "AlphaBalancedCrossEntropy", "MODEL.CLS_LOSS.ALPHA", -1.0,
    ],
}


class _Recording(nn.Module):
    """Wraps a sampler and keeps what each call received and returned."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.needs_losses = inner.needs_losses
        self.calls = []

    def forward(self, labels, losses=None, boxes=None):
        out = self.inner(labels, losses, boxes)
        self.calls.append({"labels": labels.clone(), "losses": losses, "boxes": boxes, "out": out})
        return out


def _model(sampler=None, *opts):
    model = quick_model("MODEL.RETINANET.LOSS_NORMALIZER_MOMENTUM", 0.0, *opts)
    spread_scores(model)
    if sampler is not None:
        model.sampler = _Recording(sampler)
    return model.train()


def _sampled_mean(images, calls, alpha, gamma):
    """Class loss summed over K, averaged over every anchor the recorded calls sampled."""
    total, count = 0.0, 0
    for image, call in zip(images, calls):
        rows = torch.cat(call["out"])
        total += sigmoid_focal_loss(
            image["logits"][rows], image["targets"][rows], alpha=alpha, gamma=gamma, reduction="sum"
        ).item()
        count += rows.numel()
    return total / count


def test_random_sampling_loss_is_the_mean_over_the_sampled_anchors():
    model = _model(BalancedRandomSampler(64, 0.25), *CE)
    batch = quick_batch(2, 128, 160)
    images = hand_matched(model, batch)
    torch.manual_seed(0)
    losses = model(batch)
    calls = model.sampler.calls
    assert len(calls) == 2
    for image, call in zip(images, calls):
        assert torch.equal(call["labels"], image["labels"])
        assert call["losses"] is None and call["boxes"] is None
        pos, neg = call["out"]
        assert pos.numel() == min(16, image["num_pos"]) and pos.numel() + neg.numel() == 64
    expected = _sampled_mean(images, calls, alpha=-1.0, gamma=0.0)
    assert losses["loss_cls"].item() == pytest.approx(expected, rel=1e-5)
    # Divided by the 128 sampled anchors, not by the foreground count.
    num_pos = sum(image["num_pos"] for image in images)
    assert num_pos != 128
    # The box loss keeps its foreground normalisation.
    assert losses["loss_box_reg"].item() == pytest.approx(sum(i["box"] for i in images) / num_pos, rel=1e-5)


def test_ohem_gets_per_anchor_losses_and_decoded_boxes_and_trains_on_its_picks():
    model = _model(OHEMSampler(32, -1.0, 0.5))  # with the focal loss, to check the losses handed over
    batch = quick_batch(2, 128, 160)
    images = hand_matched(model, batch)
    losses = model(batch)
    calls = model.sampler.calls
    for image, call in zip(images, calls):
        per_anchor = sigmoid_focal_loss(image["logits"], image["targets"], alpha=0.25, gamma=2.0).sum(-1)
        torch.testing.assert_close(call["losses"], per_anchor, rtol=1e-5, atol=1e-7)
        boxes = model.box_coder.decode(image["deltas"], image["anchors"])
        torch.testing.assert_close(call["boxes"], boxes)
        assert not call["losses"].requires_grad and not call["boxes"].requires_grad
        # The same picks from a fresh sampler given the hand-computed losses and boxes.
        pos, neg = OHEMSampler(32, -1.0, 0.5)(image["labels"], per_anchor, boxes)
        assert torch.equal(call["out"][0], pos) and torch.equal(call["out"][1], neg)
        assert pos.numel() + neg.numel() == 32
        assert torch.all(image["labels"][torch.cat((pos, neg))] != IGNORE)
    expected = _sampled_mean(images, calls, alpha=0.25, gamma=2.0)
    assert losses["loss_cls"].item() == pytest.approx(expected, rel=1e-5)


def test_gradient_reaches_exactly_the_sampled_anchors():
    model = _model(OHEMSampler(24, 0.25, 0.5), *CE)
    batch = quick_batch(2, 128, 160)
    with torch.no_grad():
        logits, deltas, anchors = model.forward_features(model.preprocess_image(batch))
    logits = [x.clone().requires_grad_(True) for x in logits]
    losses = model.losses(logits, deltas, anchors, check_targets(batch, NUM_CLASSES))
    grads = torch.autograd.grad(losses["loss_cls"], logits)
    touched = torch.cat(grads, 1).abs().sum(-1) != 0  # (N, R)
    for i, call in enumerate(model.sampler.calls):
        expected = torch.zeros_like(touched[i])
        expected[torch.cat(call["out"])] = True
        assert torch.equal(touched[i], expected)
        assert int(expected.sum()) == 24 and call["out"][0].numel() <= 6


def test_sampled_class_loss_ignores_normalize_per_image():
    batch = quick_batch(2, 128, 160)
    per_batch = _model(OHEMSampler(32, 0.25, 0.5), *CE)(batch)
    model = _model(OHEMSampler(32, 0.25, 0.5), "MODEL.RETINANET.NORMALIZE_PER_IMAGE", True, *CE)
    images = hand_matched(model, batch)
    per_image = model(batch)
    assert per_image["loss_cls"].item() == pytest.approx(per_batch["loss_cls"].item(), rel=1e-6)
    expected_box = sum(i["box"] / max(i["num_pos"], 1) for i in images) / 2
    assert per_image["loss_box_reg"].item() == pytest.approx(expected_box, rel=1e-5)


def test_default_config_losses_unchanged():
    model = _model()
    assert model.sampler is None  # the default config names no sampler
    batch = quick_batch(2, 128, 160)
    losses = model(batch)
    # Reference: the existing path's pieces, composed as before samplers existed (bit for bit).
    with torch.no_grad():
        logits, deltas, anchors = model.forward_features(model.preprocess_image(batch))
        logits, deltas, anchors = torch.cat(logits, 1), torch.cat(deltas, 1), torch.cat(anchors)
        targets = check_targets(batch, NUM_CLASSES)
        labels, classes, boxes = match_anchors(anchors, targets, model.matcher, NUM_CLASSES)
        cls_sum = _cls_loss_sums(logits, labels, classes, model.cls_loss, 1)[0]
        box_sum = _box_loss_sums(deltas, anchors, labels, boxes, model.box_coder, model.box_loss, 1)[0]
        normalizer = (labels == POSITIVE).sum().clamp(min=1).float()
    assert torch.equal(losses["loss_cls"].detach(), cls_sum / normalizer)
    assert torch.equal(losses["loss_box_reg"].detach(), box_sum / normalizer)
    # And the paper's definition, by hand: FL summed over non-ignored anchors / foreground count.
    images = hand_matched(model, batch)
    num_pos = sum(i["num_pos"] for i in images)
    fl = sum(
        sigmoid_focal_loss(i["logits"][i["labels"] != IGNORE], i["targets"][i["labels"] != IGNORE],
                           alpha=0.25, gamma=2.0, reduction="sum").item()
        for i in images
    )
    assert losses["loss_cls"].item() == pytest.approx(fl / num_pos, rel=1e-5)
    # A sampler leaves the box loss as it was, and adds nothing to the weights.
    sampled = _model(OHEMSampler(32, -1.0, 0.5))
    assert torch.equal(sampled(batch)["loss_box_reg"], losses["loss_box_reg"])
    assert list(sampled.state_dict()) == list(model.state_dict())


def _shapes_tiny_cfg(opts):
    cfg = get_cfg()
    cfg.merge_from_file(SHAPES_TINY)
    cfg.merge_from_list([str(o) for o in opts])
    return cfg


@pytest.mark.parametrize("name", list(ABLATION))
def test_ablation_settings_train_on_the_quick_shapes_config(name):
    cfg = _shapes_tiny_cfg(ABLATION[name])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    expected_sampler = {"FL": type(None), "1:3 CE": BalancedRandomSampler, "OHEM": OHEMSampler}[name]
    assert isinstance(model.sampler, expected_sampler)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = model.head.cls_score.weight.detach().clone()
    for step in range(2):
        batch = make_synthetic_batch(2, 128, 160, num_classes=cfg.MODEL.RETINANET.NUM_CLASSES, seed=step)
        losses = model(batch)
        assert set(losses) == {"loss_cls", "loss_box_reg"}
        assert all(math.isfinite(v.item()) and v.item() > 0 for v in losses.values()), losses
        optimizer.zero_grad()
        sum(losses.values()).backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert all(bool(torch.isfinite(g).all()) for g in grads)
        assert model.head.cls_score.weight.grad.abs().sum() > 0
        optimizer.step()
    assert not torch.equal(before, model.head.cls_score.weight)


def test_unknown_sampler_name_names_the_closest():
    cfg = _shapes_tiny_cfg(["MODEL.RETINANET.SAMPLER.NAME", "OHEMSample"])
    with pytest.raises(KeyError, match=r"No object named 'OHEMSample' in the SAMPLER registry.*Did you mean 'OHEMSampler'"):
        build_model(cfg)


def test_per_anchor_losses_of_each_class_loss():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 4, generator=g) * 3
    classes = torch.tensor([[4, 0, 3, 4, 4, 1, 4], [2, 4, 4, 4, 0, 4, 4]])  # 4 = K: background
    targets = torch.nn.functional.one_hot(classes, 5)[..., :4].float()
    cases = (
        (SigmoidFocalLoss(0.25, 2.0), sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0)),
        (AlphaBalancedCrossEntropy(-1.0), sigmoid_focal_loss(logits, targets, alpha=-1.0, gamma=0.0)),
        (SigmoidFocalLossStar(4.0, 0.0, 0.25), sigmoid_focal_loss_star(logits, targets, 0.25, 4.0, 0.0)),
    )
    for cls_loss, per_element in cases:
        torch.testing.assert_close(per_anchor_cls_losses(logits, classes, cls_loss), per_element.sum(-1))


def test_class_loss_that_cannot_be_mapped_per_anchor_is_named():
    class DataDependentLoss(nn.Module):
        def forward(self, logits, targets):
            return logits.sum() if bool(targets.sum() > 0) else -logits.sum()

    with pytest.raises(RuntimeError, match=r"The class loss DataDependentLoss \(MODEL.CLS_LOSS.NAME\) could not"):
        per_anchor_cls_losses(torch.zeros(1, 3, 2), torch.tensor([[0, 2, 1]]), DataDependentLoss())

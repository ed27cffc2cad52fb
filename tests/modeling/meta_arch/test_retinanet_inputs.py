"""RetinaNet refuses bad input with errors naming the image and the entry, and trains on degenerate targets."""
import math

import pytest
import torch

from retinadet.utils.testing import QUICK_NUM_CLASSES as NUM_CLASSES
from retinadet.utils.testing import QUICK_SIZE
from retinadet.utils.testing import quick_batch as _batch
from retinadet.utils.testing import quick_model as _model

H, W = QUICK_SIZE


@pytest.fixture(scope="module")
def model():
    return _model()

# ---------------------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    "image, expected",
    [
        (torch.zeros(1, H, W, dtype=torch.uint8), r"\(1, 64, 96\)"),
        (torch.zeros(H, W, dtype=torch.uint8), r"\(64, 96\)"),
        (torch.zeros(3, H, W, dtype=torch.int32), r"torch\.int32"),
        (torch.zeros(3, H, W, dtype=torch.bool), r"torch\.bool"),
    ],
)
@pytest.mark.parametrize("training", [True, False])
def test_bad_image_names_index_and_shape_or_dtype(model, image, expected, training):
    batch = _batch()
    batch[1]["image"] = image
    model.train(training)
    with pytest.raises(ValueError, match=r"batched_inputs\[1\].*" + expected):
        model(batch)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("training", [True, False])
def test_non_finite_pixels_are_refused(model, value, training):
    batch = _batch()
    image = batch[0]["image"].float()
    image[1, 5, 7] = value
    batch[0]["image"] = image
    model.train(training)
    with pytest.raises(ValueError, match=r"batched_inputs\[0\]\['image'\] has 1 NaN or inf pixel values "
                                         r"\(the first at channel 1, y 5, x 7"):
        model(batch)


def test_a_float_image_in_0_1_warns_once_with_its_maximum(model, caplog):
    from retinadet.modeling.meta_arch import input_checks

    input_checks._warned_unit_range = False
    batch = _batch()
    for item in batch:
        item["image"] = item["image"].float() / 255.0
    model.eval()
    with caplog.at_level("WARNING", logger=input_checks.__name__):
        model(batch)
        model(batch)
    warnings = [r.getMessage() for r in caplog.records if "expects 0-255" in r.getMessage()]
    high = float(batch[0]["image"].max())
    assert len(warnings) == 1 and f"values up to {high:.4g}" in warnings[0]


@pytest.mark.parametrize("box", [[100.0, 10.0, 120.0, 30.0], [10.0, 70.0, 20.0, 80.0], [-30.0, 5.0, -2.0, 9.0],
                                 [96.0, 0.0, 99.0, 5.0]])
def test_a_box_entirely_outside_its_image_is_named(model, box):
    batch = _batch()
    batch[1]["boxes"] = torch.tensor([[1.0, 1.0, 5.0, 5.0], box])
    batch[1]["labels"] = torch.tensor([0, 1])
    model.train()
    with pytest.raises(ValueError, match=rf"batched_inputs\[1\]\['boxes'\]\[1\] = .* lies entirely outside its "
                                         rf"{H} x {W} image"):
        model(batch)


@pytest.mark.parametrize(
    "bad_box",
    [
        [50.0, 10.0, 40.0, 30.0],  # x2 < x1
        [10.0, 50.0, 40.0, 30.0],  # y2 < y1
        [10.0, float("nan"), 40.0, 30.0],
        [10.0, 10.0, float("inf"), 30.0],
    ],
)
def test_bad_box_names_image_and_entry(model, bad_box):
    batch = _batch()
    batch[1]["boxes"][2] = torch.tensor(bad_box)
    model.train()
    with pytest.raises(ValueError, match=r"batched_inputs\[1\]\['boxes'\]\[2\]"):
        model(batch)


@pytest.mark.parametrize("label", [NUM_CLASSES, -1, 100])
def test_label_outside_range_names_value_and_range(model, label):
    batch = _batch()
    batch[0]["labels"][1] = label
    model.train()
    with pytest.raises(ValueError, match=rf"batched_inputs\[0\]\['labels'\]\[1\] = {label} .*\[0, 3\)"):
        model(batch)


def test_missing_labels_in_training(model):
    batch = _batch()
    del batch[1]["labels"]
    model.train()
    with pytest.raises(ValueError, match=r"batched_inputs\[1\].*'labels'"):
        model(batch)
    # Inference does not need targets.
    model.eval()
    with torch.no_grad():
        assert len(model(batch)) == 2


@pytest.mark.parametrize("training", [True, False])
def test_empty_batch(model, training):
    model.train(training)
    with pytest.raises(ValueError, match="non-empty"):
        model([])


# ---------------------------------------------------------------------------- degenerate targets


def _assert_finite_gradients(model, losses):
    model.zero_grad()
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert sum(g is not None for g in grads) > 0.9 * len(grads)
    for name, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name


def test_image_without_boxes_trains():
    model = _model().train()
    batch = _batch(1)
    batch[0]["boxes"] = torch.zeros(0, 4)
    batch[0]["labels"] = torch.zeros(0, dtype=torch.int64)
    losses = model(batch)
    assert losses["loss_box_reg"].item() == 0.0
    assert math.isfinite(losses["loss_cls"].item()) and losses["loss_cls"].item() > 0
    _assert_finite_gradients(model, losses)
    # No foreground: the EMA moves towards max(num_pos, 1) = 1 (hand: 0.9 * 100 + 0.1 * 1).
    assert model.loss_normalizer.item() == pytest.approx(90.1)


@pytest.mark.parametrize("normalize_per_image", [False, True])
def test_batch_without_any_foreground_gives_finite_losses(normalize_per_image):
    model = _model("MODEL.RETINANET.NORMALIZE_PER_IMAGE", normalize_per_image).train()
    batch = _batch(2)
    batch[0]["boxes"] = torch.zeros(0, 4)
    batch[0]["labels"] = torch.zeros(0, dtype=torch.int64)
    # A zero-area box overlaps no anchor (IoU 0): it produces no foreground either.
    batch[1]["boxes"] = torch.tensor([[20.0, 20.0, 20.0, 40.0]])
    batch[1]["labels"] = torch.tensor([1])
    losses = model(batch)
    assert losses["loss_box_reg"].item() == 0.0
    assert math.isfinite(losses["loss_cls"].item()) and losses["loss_cls"].item() > 0
    _assert_finite_gradients(model, losses)


def test_zero_area_boxes_in_a_batch_keep_gradients_finite():
    model = _model().train()
    batch = _batch(2)
    # Zero width, a real box, zero height.
    batch[0]["boxes"] = torch.tensor(
        [[10.0, 10.0, 10.0, 40.0], [20.0, 20.0, 60.0, 50.0], [5.0, 30.0, 45.0, 30.0]]
    )
    batch[0]["labels"] = torch.tensor([0, 1, 2])
    batch[1]["boxes"] = torch.tensor([[7.0, 7.0, 7.0, 7.0]])
    batch[1]["labels"] = torch.tensor([2])
    losses = model(batch)
    for value in losses.values():
        assert math.isfinite(value.item())
    assert losses["loss_box_reg"].item() > 0  # the one real box has foreground anchors
    _assert_finite_gradients(model, losses)



@pytest.mark.parametrize(
    "extra, message",
    [({"height": 64}, "has 'height' but no 'width'"), ({"width": 64}, "has 'width' but no 'height'"),
     ({"height": 0, "width": 64}, r"\['height'\] = 0; expected a positive integer"),
     ({"height": 64, "width": 12.5}, r"\['width'\] = 12.5; expected a positive integer")],
)
def test_output_size_must_be_complete_and_positive(model, extra, message):
    batch = [{"image": torch.zeros(3, 32, 32, dtype=torch.uint8)}, dict({"image": torch.zeros(3, 32, 32)}, **extra)]
    model.eval()
    with pytest.raises(ValueError, match=r"batched_inputs\[1\]" + ".*" + message):
        model(batch)

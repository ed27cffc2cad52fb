"""Reliability catalogue, model-input family: bad list-of-dict inputs to RetinaNet and Faster R-CNN."""
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from retinadet.config import get_cfg
from retinadet.modeling import build_model
from retinadet.modeling.meta_arch import input_checks

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {
    "retinanet": (str(REPO / "configs" / "quick" / "retinanet_R_18_synthetic.yaml"), "MODEL.RETINANET.NUM_CLASSES"),
    "rcnn": (str(REPO / "configs" / "quick" / "faster_rcnn_R_18_shapes_tiny.yaml"), "MODEL.ROI_HEADS.NUM_CLASSES"),
}
NUM_CLASSES = 3
H, W = 32, 48


@pytest.fixture(scope="module", params=list(CONFIGS))
def arch(request):
    """(name, model, config key of its class count): a tiny ResNet-18 detector with 3 classes, built once."""
    path, key = CONFIGS[request.param]
    cfg = get_cfg()
    cfg.merge_from_file(path)
    cfg.merge_from_list([key, str(NUM_CLASSES), "MODEL.FPN.OUT_CHANNELS", "32"])
    torch.manual_seed(0)
    return request.param, build_model(cfg), key


def _image(dtype=torch.uint8, h=H, w=W):
    return torch.full((3, h, w), 100, dtype=dtype)


def _item(**overrides):
    item = {"image": _image(), "boxes": torch.tensor([[2.0, 3.0, 20.0, 25.0]]), "labels": torch.tensor([1])}
    item.update(overrides)
    return item


def _run(model, inputs, training):
    model.train(training)
    try:
        with torch.no_grad():
            return model(inputs)
    finally:
        model.eval()


# ------------------------------------------------------------------------------------------ the batch and images


@pytest.mark.parametrize("inputs,message", [
    ([], r"The model takes a non-empty list of dicts, one per image; got list of length 0\."),
    (torch.zeros(1, 3, H, W), r"The model takes a non-empty list of dicts, one per image; got Tensor\."),
    ([torch.zeros(3, H, W)], r"batched_inputs\[0\] must be a dict with an 'image' entry; got Tensor"),
    ([{"img": torch.zeros(3, H, W)}], r"batched_inputs\[0\] must be a dict with an 'image' entry; got dict"),
])
def test_bad_batch_container_is_refused(arch, inputs, message):
    _, model, _ = arch
    with pytest.raises(ValueError, match=message):
        _run(model, inputs, training=False)


@pytest.mark.parametrize("image,message", [
    (np.zeros((3, H, W), dtype=np.uint8), r"batched_inputs\[1\]\['image'\] must be a torch\.Tensor; got ndarray"),
    (torch.zeros(H, W, 3, dtype=torch.uint8), rf"batched_inputs\[1\]\['image'\] has shape \({H}, {W}, 3\); "
                                             r"expected \(3, H, W\)"),
    (torch.zeros(H, W, dtype=torch.uint8), rf"batched_inputs\[1\]\['image'\] has shape \({H}, {W}\)"),
    (torch.zeros(3, 0, W, dtype=torch.uint8), rf"batched_inputs\[1\]\['image'\] has shape \(3, 0, {W}\); expected "
                                             r"\(3, H, W\) with H, W >= 1"),
    (torch.zeros(3, H, W, dtype=torch.int32), r"batched_inputs\[1\]\['image'\] has dtype torch\.int32; expected one "
                                             r"of .*with values in 0-255"),
    (torch.zeros(3, H, W, dtype=torch.bool), r"batched_inputs\[1\]\['image'\] has dtype torch\.bool"),
])
def test_bad_image_is_named_by_its_index(arch, image, message):
    _, model, _ = arch
    with pytest.raises(ValueError, match=message):
        _run(model, [{"image": _image()}, {"image": image}], training=False)


@pytest.mark.parametrize("value,shown", [(float("nan"), "nan"), (float("inf"), "inf"), (float("-inf"), "-inf")])
def test_non_finite_pixels_are_refused_with_their_position(arch, value, shown):
    _, model, _ = arch
    image = _image(torch.float32)
    image[1, 4, 7] = value
    with pytest.raises(ValueError, match=rf"batched_inputs\[0\]\['image'\] has 1 NaN or inf pixel values \(the first "
                                         rf"at channel 1, y 4, x 7: {shown}\)"):
        _run(model, [{"image": image}], training=False)


def test_float_image_in_0_1_warns_once_with_its_maximum(arch, monkeypatch, caplog):
    _, model, _ = arch
    monkeypatch.setattr(input_checks, "_warned_unit_range", False)
    # Big enough that GroupNorm sees more than one value per group at P7 (stride 128): the forward runs through.
    image = torch.full((3, 256, 256), 0.25)
    image[0, 0, 0] = 0.75
    with caplog.at_level(logging.WARNING, logger=input_checks.logger.name):
        _run(model, [{"image": image}], training=False)
        _run(model, [{"image": image}], training=False)
    warnings = [r.getMessage() for r in caplog.records if "float image with values up to" in r.getMessage()]
    assert warnings == ["batched_inputs[0]['image'] is a float image with values up to 0.75; the model expects 0-255 "
                        "(MODEL.PIXEL_MEAN and PIXEL_STD are in that range): multiply by 255 if it is in 0-1. This "
                        "warning is given once."]


@pytest.mark.parametrize("extra,message", [
    ({"height": 64}, r"batched_inputs\[0\] has 'height' but no 'width'; give both or neither"),
    ({"width": 64}, r"batched_inputs\[0\] has 'width' but no 'height'; give both or neither"),
    ({"height": 0, "width": 64}, r"batched_inputs\[0\]\['height'\] = 0; expected a positive integer"),
    ({"height": 64, "width": 10.5}, r"batched_inputs\[0\]\['width'\] = 10\.5; expected a positive integer"),
])
def test_bad_output_size_is_refused(arch, extra, message):
    _, model, _ = arch
    with pytest.raises(ValueError, match=message):
        _run(model, [{"image": _image(), **extra}], training=False)


# ------------------------------------------------------------------------------------------ training targets


@pytest.mark.parametrize("drop", ["labels", "boxes"])
def test_training_without_boxes_or_labels_is_refused(arch, drop):
    _, model, _ = arch
    item = _item()
    del item[drop]
    with pytest.raises(ValueError, match=r"batched_inputs\[0\] lacks 'boxes' or 'labels'; training needs both"):
        _run(model, [item], training=True)


@pytest.mark.parametrize("boxes,message", [
    (torch.tensor([[2.0, float("nan"), 20.0, 25.0]]), r"batched_inputs\[0\]\['boxes'\]\[0\] = \[2\.0, nan, 20\.0, "
                                                     r"25\.0\] is not finite"),
    (torch.tensor([[20.0, 3.0, 2.0, 25.0]]), r"batched_inputs\[0\]\['boxes'\]\[0\] = \[20\.0, 3\.0, 2\.0, 25\.0\] has "
                                             r"x2 < x1 or y2 < y1"),
    (torch.tensor([[60.0, 3.0, 80.0, 25.0]]), rf"batched_inputs\[0\]\['boxes'\]\[0\] = \[60\.0, 3\.0, 80\.0, 25\.0\] "
                                              rf"lies entirely outside its {H} x {W} image"),
    (torch.tensor([[2, 3, 20, 25]]), r"batched_inputs\[0\]\['boxes'\] must be floating point; got torch\.int64"),
    (torch.tensor([[2.0, 3.0, 20.0, 25.0, 1.0]]), r"batched_inputs\[0\]\['boxes'\] must be a float \(N, 4\) xyxy "
                                                  r"tensor; got \(1, 5\)"),
])
def test_bad_boxes_are_named(arch, boxes, message):
    _, model, _ = arch
    with pytest.raises(ValueError, match=message):
        _run(model, [_item(boxes=boxes)], training=True)


@pytest.mark.parametrize("label", [NUM_CLASSES, -1])
def test_label_out_of_range_names_the_class_count_key(arch, label):
    _, model, key = arch
    with pytest.raises(ValueError, match=rf"batched_inputs\[0\]\['labels'\]\[0\] = {label} is outside "
                                         rf"\[0, {NUM_CLASSES}\) \({re.escape(key)}\)"):
        _run(model, [_item(labels=torch.tensor([label]))], training=True)


@pytest.mark.parametrize("labels,message", [
    (torch.tensor([1.0]), r"batched_inputs\[0\]\['labels'\] must be integers; got torch\.float32"),
    (torch.tensor([1, 2]), r"batched_inputs\[0\]\['labels'\] must be an int64 \(1,\) tensor; got \(2,\)"),
])
def test_bad_labels_are_named(arch, labels, message):
    _, model, _ = arch
    with pytest.raises(ValueError, match=message):
        _run(model, [_item(labels=labels)], training=True)


def test_inverted_crowd_box_is_named(arch):
    _, model, _ = arch
    with pytest.raises(ValueError, match=r"batched_inputs\[0\]\['crowd_boxes'\]\[0\] = \[9\.0, 9\.0, 1\.0, 1\.0\] has "
                                         r"x2 < x1 or y2 < y1"):
        _run(model, [_item(crowd_boxes=torch.tensor([[9.0, 9.0, 1.0, 1.0]]))], training=True)

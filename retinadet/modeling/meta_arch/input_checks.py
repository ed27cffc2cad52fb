"""Validation of the model's list[dict] inputs, with errors naming the image and the entry."""
import logging
from typing import Dict, List, Sequence

import torch
from torch import Tensor

from ...structures import ImageList

__all__ = ["check_images", "check_pixel_normalisation", "check_targets", "normalize_and_pad"]

logger = logging.getLogger(__name__)

_IMAGE_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_images(batched_inputs: Sequence[Dict]) -> None:
    """Raise ValueError unless every ``batched_inputs[i]["image"]`` is a (3, H, W) image tensor."""
    if not isinstance(batched_inputs, (list, tuple)) or len(batched_inputs) == 0:
        raise ValueError(
            f"The model takes a non-empty list of dicts, one per image; got {type(batched_inputs).__name__}"
            + (" of length 0" if isinstance(batched_inputs, (list, tuple)) else "")
            + "."
        )
    for i, item in enumerate(batched_inputs):
        if not isinstance(item, dict) or "image" not in item:
            raise ValueError(f"batched_inputs[{i}] must be a dict with an 'image' entry; got {type(item).__name__}.")
        image = item["image"]
        if not isinstance(image, Tensor):
            raise ValueError(f"batched_inputs[{i}]['image'] must be a torch.Tensor; got {type(image).__name__}.")
        if image.dim() != 3 or image.shape[0] != 3 or image.shape[1] < 1 or image.shape[2] < 1:
            raise ValueError(
                f"batched_inputs[{i}]['image'] has shape {tuple(image.shape)}; expected (3, H, W) with H, W >= 1."
            )
        if image.dtype not in _IMAGE_DTYPES:
            raise ValueError(
                f"batched_inputs[{i}]['image'] has dtype {image.dtype}; expected one of "
                f"{[str(d) for d in _IMAGE_DTYPES]} with values in 0-255."
            )
        if image.is_floating_point():
            _check_float_pixels(i, image)
        _check_output_size(i, item)


_warned_unit_range = False


def _check_float_pixels(i: int, image: Tensor) -> None:
    """NaN or inf pixels are an error (training would give a NaN loss, inference no detections); a
    float image in 0-1 gets one warning per process, since the model expects 0-255 values."""
    global _warned_unit_range
    finite = torch.isfinite(image)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        c, y, x = (int(v) for v in (~finite).nonzero()[0])
        raise ValueError(f"batched_inputs[{i}]['image'] has {bad} NaN or inf pixel values (the first at channel {c}, "
                         f"y {y}, x {x}: {image[c, y, x].item()}); images must be finite, 0-255.")
    if not _warned_unit_range and image.numel():
        high = float(image.max())
        if 0.0 < high <= 1.0:
            _warned_unit_range = True
            logger.warning("batched_inputs[%d]['image'] is a float image with values up to %.4g; the model expects "
                           "0-255 (MODEL.PIXEL_MEAN and PIXEL_STD are in that range): multiply by 255 if it is in "
                           "0-1. This warning is given once.", i, high)


def _check_output_size(i: int, item: Dict) -> None:
    """"height" and "width" (the frame to report detections in) come together, as positive ints."""
    given = [k for k in ("height", "width") if k in item]
    if len(given) == 1:
        missing = "width" if given[0] == "height" else "height"
        raise ValueError(f"batched_inputs[{i}] has '{given[0]}' but no '{missing}'; give both or neither.")
    for key in given:
        value = item[key]
        if isinstance(value, Tensor):
            value = value.item()
        if isinstance(value, bool) or not float(value).is_integer() or value < 1:
            raise ValueError(f"batched_inputs[{i}]['{key}'] = {item[key]!r}; expected a positive integer.")


def _check_boxes_of_image(i: int, boxes: Tensor, key: str = "boxes") -> None:
    where = f"batched_inputs[{i}]['{key}']"
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"{where} must be a float (N, 4) xyxy tensor; got {shape}.")
    if not boxes.is_floating_point():
        raise ValueError(f"{where} must be floating point; got {boxes.dtype}.")
    bad = ~torch.isfinite(boxes).all(dim=1)
    if bad.any():
        j = int(bad.nonzero()[0])
        raise ValueError(f"{where}[{j}] = {boxes[j].tolist()} is not finite.")
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if inverted.any():
        j = int(inverted.nonzero()[0])
        raise ValueError(
            f"{where}[{j}] = {boxes[j].tolist()} has x2 < x1 or y2 < y1; "
            "boxes must be xyxy in absolute pixels."
        )


def _check_boxes_meet_image(i: int, boxes: Tensor, image_size) -> None:
    """ValueError naming the first box that lies entirely outside the (H, W) image: it could never be
    matched, and a data set producing it has its coordinates in another frame."""
    h, w = int(image_size[0]), int(image_size[1])
    outside = (boxes[:, 0] >= w) | (boxes[:, 1] >= h) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
    if outside.any():
        j = int(outside.nonzero()[0])
        raise ValueError(f"batched_inputs[{i}]['boxes'][{j}] = {boxes[j].tolist()} lies entirely outside its "
                         f"{h} x {w} image; boxes are xyxy in the image's own pixels.")


def check_targets(
    batched_inputs: Sequence[Dict], num_classes: int, num_classes_key: str = "MODEL.RETINANET.NUM_CLASSES"
) -> List[Dict[str, Tensor]]:
    """Check training targets; return [{"boxes": (N, 4) float, "labels": (N,) int64}] per image.

    ``num_classes_key`` is the config key of ``num_classes``, named when a label is out of range.

    An optional "crowd_boxes" (K, 4) xyxy entry (crowd regions, e.g. COCO iscrowd) is checked like
    "boxes" and passed on; the matcher makes the anchors they cover IGNORE instead of NEGATIVE.
    """
    targets = []
    for i, item in enumerate(batched_inputs):
        if "boxes" not in item or "labels" not in item:
            raise ValueError(
                f"batched_inputs[{i}] lacks 'boxes' or 'labels'; training needs both (use an empty "
                "(0, 4) tensor and (0,) tensor for an image without objects)."
            )
        boxes, labels = item["boxes"], item["labels"]
        _check_boxes_of_image(i, boxes)
        _check_boxes_meet_image(i, boxes, item["image"].shape[-2:])
        if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != boxes.shape[0]:
            shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(
                f"batched_inputs[{i}]['labels'] must be an int64 ({boxes.shape[0]},) tensor; got {shape}."
            )
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"batched_inputs[{i}]['labels'] must be integers; got {labels.dtype}.")
        outside = (labels < 0) | (labels >= num_classes)
        if outside.any():
            j = int(outside.nonzero()[0])
            raise ValueError(
                f"batched_inputs[{i}]['labels'][{j}] = {int(labels[j])} is outside [0, {num_classes}) "
                f"({num_classes_key})."
            )
        target = {"boxes": boxes.float(), "labels": labels.long()}
        if "crowd_boxes" in item:
            _check_boxes_of_image(i, item["crowd_boxes"], key="crowd_boxes")
            target["crowd_boxes"] = item["crowd_boxes"].float()
        targets.append(target)
    return targets


def check_pixel_normalisation(pixel_mean: Sequence[float], pixel_std: Sequence[float]) -> None:
    """ValueError naming MODEL.PIXEL_MEAN / PIXEL_STD unless each holds 3 values and every std is > 0
    (a 0 would turn every pixel into inf and the model would find nothing)."""
    if len(pixel_mean) != 3 or len(pixel_std) != 3 or any(s <= 0 for s in pixel_std):
        raise ValueError(
            f"pixel_mean = {list(pixel_mean)} and pixel_std = {list(pixel_std)} (MODEL.PIXEL_MEAN / "
            "MODEL.PIXEL_STD) must each hold 3 values, the std ones > 0."
        )


def normalize_and_pad(
    batched_inputs: Sequence[Dict], pixel_mean: Tensor, pixel_std: Tensor, size_divisibility: int,
    channels_last: bool = False,
) -> ImageList:
    """Check the images, normalise each ((x - mean) / std, (3, 1, 1) tensors on the model's device,
    in float32) and pad them into an ImageList whose sides are multiples of ``size_divisibility``;
    its (N, 3, Hp, Wp) tensor is in channels_last memory format when ``channels_last``."""
    check_images(batched_inputs)
    images = [(x["image"].to(pixel_mean.device, torch.float32) - pixel_mean) / pixel_std for x in batched_inputs]
    batch = ImageList.from_tensors(images, size_divisibility)
    if channels_last:
        batch.tensor = batch.tensor.contiguous(memory_format=torch.channels_last)
    return batch

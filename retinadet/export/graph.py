"""The exported detector: one uint8 image of any size in, its detections out, every step in the graph.

:class:`DetectionGraph` wraps a detector (RetinaNet, GeneralizedRCNN, or any meta-architecture with
``detect(images)``) into the function that is traced: test-time resize, normalisation, padding,
the network, anchors, decoding, NMS, and the boxes scaled back to the input image's frame. It is an
ordinary module, so the same code runs eagerly (the reference the exported files are checked
against) and traced (TorchScript, ONNX).
"""
import functools
import warnings
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..modeling.meta_arch.postprocess import drop_empty_boxes
from ..ops.traced_nms import export_format
from ..structures import ImageList, clip_boxes
from ..utils.tracing import is_tracing

__all__ = ["DetectionGraph", "check_image", "resized_shape"]


def check_image(image: Tensor) -> Tensor:
    """``image`` unchanged when it is (3, H, W) uint8 with H, W >= 1, else an error saying what is wrong.
    DetectionGraph runs it scripted, so a traced TorchScript graph keeps the checks (an ONNX graph
    declares its input instead)."""
    if image.dim() != 3 or image.size(0) != 3:
        raise ValueError("the image must be (3, H, W), channels first (a 2-D gray image: stack it to 3 "
                         "channels; an (H, W, 3) image: permute it to (3, H, W))")
    if image.dtype != torch.uint8:
        raise ValueError("the image must be uint8 pixels 0-255 (a float image in 0-1: multiply by 255 and "
                         "convert to uint8)")
    if image.size(1) == 0 or image.size(2) == 0:
        raise ValueError("the image is empty (0 pixels high or wide)")
    return image


def resized_shape(height: Tensor, width: Tensor, short_edge: int, max_size: int) -> Tuple[Tensor, Tensor]:
    """(H', W') int64 of an image of ``height`` x ``width`` (0-dim int64 tensors) after the test-time
    resize: the short side becomes ``short_edge``, then both shrink so the long side is at most
    ``max_size`` (<= 0: no cap), each rounded half up. The arithmetic of
    ``retinadet.data.transforms.resize_shortest_edge_shape`` in float64, so the sizes are equal."""
    h, w = height.to(torch.float64), width.to(torch.float64)
    scale = short_edge / torch.minimum(h, w)
    new_h, new_w = h * scale, w * scale
    if max_size > 0:
        cap = torch.clamp(max_size / torch.maximum(new_h, new_w), max=1.0)
        new_h, new_w = new_h * cap, new_w * cap
    return torch.floor(new_h + 0.5).to(torch.int64), torch.floor(new_w + 0.5).to(torch.int64)


@functools.lru_cache(maxsize=None)
def _scripted_check_image():
    """:func:`check_image` scripted on first use, so a traced graph keeps its checks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's deprecation notice
        return torch.jit.script(check_image)


class DetectionGraph(nn.Module):
    """``image (3, H, W) uint8`` in the model's channel order -> ``boxes (D, 4) float32 xyxy`` in
    that image's frame, ``scores (D,) float32`` (best first) and ``labels (D,) int64``.

    Args:
        model: a detector in eval mode with ``pixel_mean``, ``pixel_std``, ``size_divisibility``,
            ``drop_empty_boxes`` and ``detect(ImageList) -> [{"boxes", "scores", "labels"}]``.
        min_size, max_size: the test-time resize (INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST); ``min_size``
            0 keeps the image's size. The resize is bilinear on float pixels (half-pixel centres,
            no antialiasing): an image already at its test size passes unchanged, so a caller that
            resizes with the data pipeline (PIL) first gets the eager model's input exactly.
    """

    def __init__(self, model: nn.Module, min_size: int, max_size: int):
        super().__init__()
        self.model = model
        self.min_size = int(min_size)
        self.max_size = int(max_size)

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Detections of one ``(3, H, W)`` uint8 image; see the class docstring."""
        if export_format() != "onnx":
            image = _scripted_check_image()(image)
        shape = torch._shape_as_tensor(image)
        height, width = shape[1], shape[2]
        pixels = image.to(torch.float32)[None]
        if self.min_size > 0:
            new_h, new_w = resized_shape(height, width, self.min_size, self.max_size)
            size = (new_h, new_w) if is_tracing() else (int(new_h), int(new_w))
            pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False)
        else:
            new_h, new_w = height, width
        model = self.model
        pixels = (pixels - model.pixel_mean) / model.pixel_std
        divisor = int(model.size_divisibility)
        if divisor > 1:
            pad_h = (divisor - new_h % divisor) % divisor
            pad_w = (divisor - new_w % divisor) % divisor
            pads = [0, pad_w, 0, pad_h] if is_tracing() else [0, int(pad_w), 0, int(pad_h)]
            pixels = F.pad(pixels, pads)
        if getattr(model, "channels_last", False):
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        image_size = (new_h, new_w) if is_tracing() else (int(new_h), int(new_w))
        detections = model.detect(ImageList(pixels, [image_size]))[0]
        detections = dict(detections, boxes=self._to_input_frame(detections["boxes"], (new_h, new_w), (height, width)))
        if model.drop_empty_boxes:
            detections = drop_empty_boxes(detections)
        return detections["boxes"], detections["scores"], detections["labels"].to(torch.int64)

    def _to_input_frame(self, boxes: Tensor, resized: Tuple[Tensor, Tensor], original: Tuple[Tensor, Tensor]):
        """``boxes (D, 4)`` xyxy of the resized image scaled to the original and clipped to it: the
        float32 factors of ``rescale_detections`` (a float64 ratio rounded once)."""
        if self.min_size <= 0:
            return boxes
        (new_h, new_w), (height, width) = resized, original
        scale_y = (height.to(torch.float64) / new_h.to(torch.float64)).to(boxes.dtype)
        scale_x = (width.to(torch.float64) / new_w.to(torch.float64)).to(boxes.dtype)
        factors = torch.stack((scale_x, scale_y, scale_x, scale_y))
        return clip_boxes(boxes * factors, (height.to(boxes.dtype), width.to(boxes.dtype)))

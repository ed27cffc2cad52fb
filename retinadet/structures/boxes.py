"""Small box helpers on (N, 4) xyxy tensors in absolute pixels."""
from typing import Tuple

import torch
from torch import Tensor

__all__ = ["clip_boxes", "scale_boxes"]


def clip_boxes(boxes: Tensor, image_size: Tuple[int, int]) -> Tensor:
    """Clip ``boxes (N, 4)`` xyxy to an image of ``(height, width)``; returns a new tensor."""
    height, width = image_size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def scale_boxes(boxes: Tensor, scale_x: float, scale_y: float) -> Tensor:
    """Multiply x coordinates of ``boxes (N, 4)`` xyxy by ``scale_x`` and y by ``scale_y``."""
    factors = boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])
    return boxes * factors

"""ImageList: images of different sizes padded into one batch tensor, with their sizes."""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ImageList"]


class ImageList:
    """A padded batch ``tensor (N, C, Hp, Wp)`` and the ``image_sizes`` [(h, w), ...] before padding."""

    def __init__(self, tensor: Tensor, image_sizes: List[Tuple[int, int]]):
        self.tensor = tensor
        self.image_sizes = image_sizes

    def __len__(self) -> int:
        return len(self.image_sizes)

    @property
    def padded_size(self) -> Tuple[int, int]:
        """(Hp, Wp) of the batch tensor."""
        return tuple(self.tensor.shape[-2:])

    @staticmethod
    def from_tensors(
        tensors: Sequence[Tensor], size_divisibility: int = 0, pad_value: float = 0.0
    ) -> "ImageList":
        """Pad ``(C, Hi, Wi)`` tensors at the bottom and right to a common size.

        The common size is the largest height and width, rounded up to a multiple of
        ``size_divisibility`` when it is > 0.
        """
        if len(tensors) == 0:
            raise ValueError("ImageList.from_tensors needs at least one image.")
        image_sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
        max_h = max(h for h, _ in image_sizes)
        max_w = max(w for _, w in image_sizes)
        if size_divisibility > 1:
            max_h = int(math.ceil(max_h / size_divisibility) * size_divisibility)
            max_w = int(math.ceil(max_w / size_divisibility) * size_divisibility)
        if len(tensors) == 1:
            h, w = image_sizes[0]
            batch = F.pad(tensors[0], (0, max_w - w, 0, max_h - h), value=pad_value)[None]
        else:
            shape = (len(tensors), tensors[0].shape[0], max_h, max_w)
            batch = tensors[0].new_full(shape, pad_value)
            for img, pad in zip(tensors, batch):
                pad[..., : img.shape[-2], : img.shape[-1]].copy_(img)
        return ImageList(batch.contiguous(), image_sizes)

    def to(self, device: torch.device) -> "ImageList":
        """Move the batch to ``device``."""
        return ImageList(self.tensor.to(device), self.image_sizes)

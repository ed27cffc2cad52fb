"""Training and test augmentations: random choices (Augmentation) that return deterministic Transforms."""
from typing import Sequence, Tuple, Union

import numpy as np
from PIL import Image

__all__ = [
    "Augmentation",
    "HFlipTransform",
    "NoOpTransform",
    "RandomFlip",
    "ResizeShortestEdge",
    "ResizeTransform",
    "Transform",
    "VFlipTransform",
    "clip_and_filter_boxes",
    "resize_shortest_edge_shape",
]


class Transform:
    """A fixed geometric change of one image; boxes follow exactly the same geometry."""

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """uint8 (H, W, C) -> uint8 (H', W', C)."""
        raise NotImplementedError

    def apply_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) xyxy absolute pixels in the input image -> float32 (N, 4) xyxy in the output image."""
        raise NotImplementedError


class NoOpTransform(Transform):
    """Leaves image and boxes unchanged."""

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        return image

    def apply_boxes(self, boxes: np.ndarray) -> np.ndarray:
        return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)

    def __repr__(self) -> str:
        return "NoOpTransform()"


class ResizeTransform(Transform):
    """Resize an (h, w) image to (new_h, new_w) with PIL bilinear; x scales by new_w / w, y by new_h / h."""

    def __init__(self, h: int, w: int, new_h: int, new_w: int) -> None:
        if min(h, w, new_h, new_w) <= 0:
            raise ValueError(f"ResizeTransform needs positive sizes; got ({h}, {w}) -> ({new_h}, {new_w}).")
        self.h, self.w, self.new_h, self.new_w = h, w, new_h, new_w

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] != (self.h, self.w):
            raise ValueError(
                f"ResizeTransform was made for an image of (H, W) = ({self.h}, {self.w}); "
                f"got {tuple(image.shape[:2])}."
            )
        if image.dtype != np.uint8:
            raise ValueError(f"ResizeTransform resizes uint8 images with PIL; got dtype {image.dtype}.")
        if (self.new_h, self.new_w) == (self.h, self.w):
            return image
        # PIL bilinear, like detectron2: models trained there see the same pixels. PIL
        # widens the filter when shrinking, so downscaling is antialiased.
        resized = Image.fromarray(image).resize((self.new_w, self.new_h), Image.BILINEAR)
        return np.asarray(resized)

    def apply_boxes(self, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scale = np.array([self.new_w / self.w, self.new_h / self.h] * 2)
        return (boxes * scale).astype(np.float32)

    def __repr__(self) -> str:
        return f"ResizeTransform(h={self.h}, w={self.w}, new_h={self.new_h}, new_w={self.new_w})"


class HFlipTransform(Transform):
    """Mirror left-right an image of the given width: x' = width - x (so x1' = width - x2)."""

    def __init__(self, width: int) -> None:
        self.width = width

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        # A copy, not a view: negative strides cannot become a tensor.
        return np.ascontiguousarray(image[:, ::-1])

    def apply_boxes(self, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        return np.stack(
            [self.width - boxes[:, 2], boxes[:, 1], self.width - boxes[:, 0], boxes[:, 3]], axis=1
        ).astype(np.float32)

    def __repr__(self) -> str:
        return f"HFlipTransform(width={self.width})"


class VFlipTransform(Transform):
    """Mirror top-bottom an image of the given height: y' = height - y (so y1' = height - y2)."""

    def __init__(self, height: int) -> None:
        self.height = height

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(image[::-1])

    def apply_boxes(self, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        return np.stack(
            [boxes[:, 0], self.height - boxes[:, 3], boxes[:, 2], self.height - boxes[:, 1]], axis=1
        ).astype(np.float32)

    def __repr__(self) -> str:
        return f"VFlipTransform(height={self.height})"


class Augmentation:
    """A random policy: ``get_transform(image_hw, rng)`` draws from ``rng`` and returns a Transform.

    All randomness comes from the numpy Generator passed in (seeded per sample by the data
    loader), so results do not depend on global state, worker processes or call order elsewhere.
    """

    def get_transform(self, image_hw: Tuple[int, int], rng: np.random.Generator) -> Transform:
        """The Transform for an image of size ``image_hw`` = (H, W)."""
        raise NotImplementedError


def resize_shortest_edge_shape(h: int, w: int, short_edge: int, max_size: int) -> Tuple[int, int]:
    """Output (H', W') when the short side of an (h, w) image becomes ``short_edge``, keeping the
    aspect ratio, then both sides shrink together so the long side is at most ``max_size``
    (``max_size`` <= 0: no cap); each side is rounded half up to an integer.

    Example: (300, 200), short 100, max 140 -> (150, 100) -> long side capped: (140, 93.3) -> (140, 93).
    """
    scale = short_edge / min(h, w)
    new_h, new_w = h * scale, w * scale
    if max_size > 0 and max(new_h, new_w) > max_size:
        cap = max_size / max(new_h, new_w)
        new_h, new_w = new_h * cap, new_w * cap
    return int(new_h + 0.5), int(new_w + 0.5)


_SAMPLE_STYLES = ("choice", "range")


class ResizeShortestEdge(Augmentation):
    """Resize so the short side has a length drawn from ``short_edge_lengths`` and the long side
    is at most ``max_size`` (see :func:`resize_shortest_edge_shape`).

    Args:
        short_edge_lengths: with ``sample_style="choice"`` one of these is picked per image;
            with ``"range"`` it is ``(min, max)`` and an integer is drawn uniformly from
            [min, max]. A drawn length of 0 leaves the image unchanged.
        max_size: cap on the long side (<= 0: no cap).
        sample_style: "choice" or "range".
    """

    def __init__(
        self, short_edge_lengths: Union[int, Sequence[int]], max_size: int, sample_style: str = "choice"
    ) -> None:
        if isinstance(short_edge_lengths, (int, np.integer)):
            short_edge_lengths = (int(short_edge_lengths),)
        lengths = tuple(int(s) for s in short_edge_lengths)
        if sample_style not in _SAMPLE_STYLES:
            raise ValueError(f"ResizeShortestEdge sample_style {sample_style!r} is not one of {list(_SAMPLE_STYLES)}.")
        if not lengths or min(lengths) < 0:
            raise ValueError(f"ResizeShortestEdge needs non-negative short edge lengths; got {list(lengths)}.")
        if sample_style == "range" and (len(lengths) != 2 or lengths[0] > lengths[1]):
            raise ValueError(
                f"ResizeShortestEdge sample_style 'range' needs (min, max) with min <= max; got {list(lengths)}."
            )
        self.short_edge_lengths = lengths
        self.max_size = int(max_size)
        self.sample_style = sample_style

    def get_transform(self, image_hw: Tuple[int, int], rng: np.random.Generator) -> Transform:
        h, w = int(image_hw[0]), int(image_hw[1])
        if self.sample_style == "range":
            short_edge = int(rng.integers(self.short_edge_lengths[0], self.short_edge_lengths[1] + 1))
        elif len(self.short_edge_lengths) == 1:
            # No draw for a single size: test-time resizing then needs no generator at all.
            short_edge = self.short_edge_lengths[0]
        else:
            short_edge = int(rng.choice(self.short_edge_lengths))
        if short_edge == 0:
            return NoOpTransform()
        new_h, new_w = resize_shortest_edge_shape(h, w, short_edge, self.max_size)
        return ResizeTransform(h, w, new_h, new_w)

    def __repr__(self) -> str:
        return (
            f"ResizeShortestEdge(short_edge_lengths={list(self.short_edge_lengths)}, "
            f"max_size={self.max_size}, sample_style={self.sample_style!r})"
        )


class RandomFlip(Augmentation):
    """Flip with probability ``prob``: left-right when ``horizontal``, else top-bottom."""

    def __init__(self, prob: float = 0.5, horizontal: bool = True) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomFlip probability must be in [0, 1]; got {prob}.")
        self.prob = float(prob)
        self.horizontal = bool(horizontal)

    def get_transform(self, image_hw: Tuple[int, int], rng: np.random.Generator) -> Transform:
        # Always draw, even for prob 0 or 1, so later augmentations see the same stream.
        if rng.random() >= self.prob:
            return NoOpTransform()
        h, w = int(image_hw[0]), int(image_hw[1])
        return HFlipTransform(w) if self.horizontal else VFlipTransform(h)

    def __repr__(self) -> str:
        return f"RandomFlip(prob={self.prob}, horizontal={self.horizontal})"


def clip_and_filter_boxes(boxes: np.ndarray, image_hw: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Clip boxes to the image and find those that still have an area.

    Args:
        boxes: (N, 4) xyxy absolute pixels.
        image_hw: (H, W) of the image the boxes lie in.

    Returns:
        (clipped float32 (N, 4), keep bool (N,)): keep is False where the clipped width or
        height is <= 0 (the box lay outside the image or was degenerate).
    """
    h, w = image_hw
    clipped = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    clipped[:, 0::2] = clipped[:, 0::2].clip(0, w)
    clipped[:, 1::2] = clipped[:, 1::2].clip(0, h)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped, keep

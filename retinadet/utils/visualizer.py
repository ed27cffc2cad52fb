"""Draws boxes with class names and scores onto images, for ground truth and predictions."""
import colorsys
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .file_io import atomic_save

__all__ = ["class_color", "draw_boxes", "save_png"]


def class_color(label: int) -> tuple:
    """A distinct, saturated RGB colour for class ``label`` (golden-ratio hue steps)."""
    hue = (label * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: Optional[Sequence[int]] = None,
    scores: Optional[Sequence[float]] = None,
    class_names: Optional[Sequence[str]] = None,
    line_width: int = 2,
) -> np.ndarray:
    """Draw ``boxes (N, 4)`` xyxy on ``image (H, W, 3)`` uint8 RGB; returns a new (H, W, 3) uint8 array.

    Each box is outlined in its class colour with a caption "name score" (or "label" / "score"
    alone when the other is not given) on a filled strip above it.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"draw_boxes needs an (H, W, 3) uint8 RGB image; got {image.shape} {image.dtype}.")
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        label = int(labels[i]) if labels is not None else 0
        color = class_color(label)
        draw.rectangle([x1, y1, x2, y2], outline=color, width=line_width)
        caption = _caption(label if labels is not None else None, scores[i] if scores is not None else None,
                           class_names)
        if caption:
            left, top, right, bottom = draw.textbbox((x1, y1), caption)
            top_y = y1 - (bottom - top) - 2 if y1 - (bottom - top) - 2 >= 0 else y1
            draw.rectangle([x1, top_y, x1 + (right - left) + 2, top_y + (bottom - top) + 2], fill=color)
            draw.text((x1 + 1, top_y), caption, fill=(0, 0, 0))
    return np.asarray(canvas)


def _caption(label: Optional[int], score: Optional[float], class_names: Optional[Sequence[str]]) -> str:
    parts = []
    if label is not None:
        parts.append(class_names[label] if class_names is not None and 0 <= label < len(class_names) else str(label))
    if score is not None:
        parts.append(f"{float(score):.2f}")
    return " ".join(parts)


def save_png(image: np.ndarray, path: str) -> None:
    """Write ``image (H, W, 3)`` uint8 RGB to ``path`` as PNG, atomically (temporary name, then rename)."""
    atomic_save(path, lambda f: Image.fromarray(image).save(f, format="PNG"))

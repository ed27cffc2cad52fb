"""Synthetic training batches: noisy images with filled rectangles, one colour per class."""
from typing import Dict, List

import torch

__all__ = ["CLASS_COLORS", "make_synthetic_batch"]

# RGB colour of each class's rectangles; classes beyond the list reuse it cyclically.
CLASS_COLORS = [(230, 40, 40), (40, 200, 60), (50, 80, 230), (240, 220, 40), (200, 60, 220)]


def make_synthetic_batch(
    num_images: int = 2,
    height: int = 256,
    width: int = 320,
    num_classes: int = 3,
    boxes_per_image: int = 3,
    seed: int = 0,
) -> List[Dict]:
    """A deterministic batch in the model's input format.

    Returns:
        list of {"image": uint8 (3, height, width) RGB, "boxes": (B, 4) float xyxy,
        "labels": (B,) int64 in [0, num_classes), "height": int, "width": int}.
    """
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(num_images):
        image = torch.randint(0, 60, (3, height, width), generator=g, dtype=torch.uint8)
        boxes, labels = [], []
        for _ in range(boxes_per_image):
            bw = int(torch.randint(width // 8, width // 2, (1,), generator=g))
            bh = int(torch.randint(height // 8, height // 2, (1,), generator=g))
            x1 = int(torch.randint(0, width - bw, (1,), generator=g))
            y1 = int(torch.randint(0, height - bh, (1,), generator=g))
            label = int(torch.randint(0, num_classes, (1,), generator=g))
            color = torch.tensor(CLASS_COLORS[label % len(CLASS_COLORS)], dtype=torch.uint8)
            image[:, y1 : y1 + bh, x1 : x1 + bw] = color[:, None, None]
            boxes.append([x1, y1, x1 + bw, y1 + bh])
            labels.append(label)
        batch.append({
            "image": image,
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "height": height,
            "width": width,
        })
    return batch

"""Random COCO ground truth and box results that exercise every branch of COCO evaluation.

For the evaluator's tests and benchmark: crowd regions, tiny and huge boxes, areas that differ from
the box area (as segmentation areas do), tied and repeated scores, detections near ground truth at
every IoU, detections of the wrong category, images without ground truth or without detections,
categories without ground truth, and category ids with gaps (as COCO's 1..90).
"""
import contextlib
import io
from typing import Any, Dict, List, Tuple

import numpy as np

__all__ = ["coco_from_dict", "random_coco"]


def coco_from_dict(dataset: Dict[str, Any], coco_class: Any = None) -> Any:
    """A COCO object (pycocotools', or ``coco_class``) indexing the ground-truth dict ``dataset``, quietly."""
    if coco_class is None:
        from pycocotools.coco import COCO as coco_class
    coco = coco_class()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def random_coco(num_images: int = 200, num_categories: int = 80, gt_per_image: float = 7.0,
                dt_per_image: float = 56.0, seed: int = 0, crowd_fraction: float = 0.02,
                score_decimals: int = 2) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """(ground-truth dataset dict, results list) of a random detection problem.

    Args:
        num_images, num_categories: sizes; category ids are 1, 2, 4, 5, 7, ... (every third skipped).
        gt_per_image, dt_per_image: Poisson means of the objects and detections of an image.
        seed: the numpy seed; equal seeds give equal data.
        crowd_fraction: the share of ground truth marked iscrowd=1.
        score_decimals: scores are rounded to this many decimals, so many tie.

    Returns:
        A COCO ground-truth dict (images, categories, annotations with ids from 1, bbox xywh,
        area, iscrowd) and a list of results dicts (image_id, category_id, bbox xywh, score).
    """
    rng = np.random.default_rng(seed)
    category_ids = [i + 1 + i // 2 for i in range(num_categories)]
    # The last tenth of the categories has detections but no ground truth.
    gt_categories = category_ids[: max(1, num_categories - num_categories // 10)]
    images, annotations, results = [], [], []
    for image_id in range(1, num_images + 1):
        width, height = int(rng.integers(200, 1000)), int(rng.integers(200, 1000))
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id:06d}.jpg"})
        objects = _random_boxes(rng, rng.poisson(gt_per_image) if image_id % 10 else 0, width, height)
        for box in objects:
            crowd = int(rng.random() < crowd_fraction)
            area = box[2] * box[3] * (1.0 if rng.random() < 0.3 else float(rng.uniform(0.4, 1.0)))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "bbox": box, "area": area,
                                "iscrowd": crowd, "category_id": int(rng.choice(gt_categories))})
        if image_id % 7 == 3:
            continue  # an image without detections
        results += _random_detections(rng, annotations, image_id, len(objects), rng.poisson(dt_per_image),
                                      width, height, category_ids, score_decimals)
    dataset = {"images": images, "annotations": annotations,
               "categories": [{"id": c, "name": f"class_{c}"} for c in category_ids]}
    return dataset, results


def _random_boxes(rng: np.random.Generator, count: int, width: int, height: int) -> List[List[float]]:
    """``count`` [x, y, w, h] boxes: mostly COCO-like, some tiny (under 2 px), some huge (most of the image)."""
    boxes = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.1:
            w, h = rng.uniform(0.1, 2.0, size=2)
        elif kind < 0.2:
            w, h = rng.uniform(0.7, 1.0) * width, rng.uniform(0.7, 1.0) * height
        else:
            w, h = np.exp(rng.uniform(np.log(4), np.log(0.6 * min(width, height)), size=2))
        x, y = rng.uniform(-0.05 * width, width - w), rng.uniform(-0.05 * height, height - h)
        boxes.append([round(float(x), 2), round(float(y), 2), round(float(w), 2), round(float(h), 2)])
    return boxes


def _random_detections(rng: np.random.Generator, annotations: List[Dict[str, Any]], image_id: int,
                       num_objects: int, count: int, width: int, height: int, category_ids: List[int],
                       decimals: int) -> List[Dict[str, Any]]:
    """Detections of one image: jittered copies of its objects (any IoU, sometimes the wrong class,
    sometimes exact duplicates) and random boxes."""
    objects = annotations[len(annotations) - num_objects:] if num_objects else []
    detections = []
    for _ in range(count):
        if objects and rng.random() < 0.6:
            target = objects[int(rng.integers(len(objects)))]
            x, y, w, h = target["bbox"]
            jitter = rng.uniform(0, 0.4) if rng.random() < 0.9 else 0.0
            box = [x + rng.normal(0, jitter) * w, y + rng.normal(0, jitter) * h,
                   w * float(np.exp(rng.normal(0, jitter))), h * float(np.exp(rng.normal(0, jitter)))]
            category = target["category_id"] if rng.random() < 0.85 else int(rng.choice(category_ids))
        else:
            box = _random_boxes(rng, 1, width, height)[0]
            category = int(rng.choice(category_ids))
        score = round(float(rng.beta(2, 2)), decimals)
        detections.append({"image_id": image_id, "category_id": category, "bbox": [float(v) for v in box],
                           "score": score})
        if rng.random() < 0.02:
            detections.append(dict(detections[-1]))  # an exact duplicate
    return detections

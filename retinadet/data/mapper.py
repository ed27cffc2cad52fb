"""DatasetMapper: one data set dict -> one model input dict (read, augment, boxes follow)."""
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from .image_io import IMAGE_FORMATS, read_image
from .transforms import Augmentation, RandomFlip, ResizeShortestEdge, clip_and_filter_boxes

__all__ = ["DatasetMapper", "build_augmentations"]

# INPUT.RANDOM_FLIP value -> RandomFlip arguments (None: no flip).
_FLIPS = {"horizontal": {"horizontal": True}, "vertical": {"horizontal": False}, "none": None}


def build_augmentations(cfg: Any, is_train: bool) -> List[Augmentation]:
    """The INPUT.* augmentations: training resizes (MIN_SIZE_TRAIN, MAX_SIZE_TRAIN,
    MIN_SIZE_TRAIN_SAMPLING) then flips (RANDOM_FLIP, probability 0.5); testing resizes
    (MIN_SIZE_TEST, MAX_SIZE_TEST) only."""
    if not is_train:
        _check_sizes("INPUT.MIN_SIZE_TEST", cfg.INPUT.MIN_SIZE_TEST, "INPUT.MAX_SIZE_TEST", cfg.INPUT.MAX_SIZE_TEST)
        return [ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")]
    _check_sizes("INPUT.MIN_SIZE_TRAIN", cfg.INPUT.MIN_SIZE_TRAIN, "INPUT.MAX_SIZE_TRAIN", cfg.INPUT.MAX_SIZE_TRAIN)
    augmentations: List[Augmentation] = [
        ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)
    ]
    flip = cfg.INPUT.RANDOM_FLIP
    if flip not in _FLIPS:
        raise ValueError(f"INPUT.RANDOM_FLIP is {flip!r}; valid values: {list(_FLIPS)}.")
    if _FLIPS[flip] is not None:
        augmentations.append(RandomFlip(prob=0.5, **_FLIPS[flip]))
    return augmentations


def _check_sizes(min_key: str, min_sizes: Any, max_key: str, max_size: int) -> None:
    """ValueError naming both keys when a short-side length exceeds the long-side cap (> 0), which
    would then always win and make the short-side setting a silent no-op."""
    lengths = [int(v) for v in (min_sizes if isinstance(min_sizes, (list, tuple)) else [min_sizes])]
    if max_size > 0 and lengths and max(lengths) > max_size:
        raise ValueError(f"{min_key} {min_sizes} exceeds {max_key} {max_size}: the long-side cap would always "
                         f"win over the short side. Set {max_key} >= {max(lengths)} (or 0 for no cap), or lower "
                         f"{min_key}.")


def _annotation_array(dataset_dict: Dict, key: str, dtype: Any, shape: tuple, default: Any = None) -> np.ndarray:
    """``dataset_dict[key]`` as an array of ``shape`` (-1 = any length), or ``default`` if absent."""
    value = dataset_dict.get(key, default)
    if value is None:
        raise ValueError(
            f"Image '{dataset_dict.get('file_name')}' (image_id {dataset_dict.get('image_id')}) has "
            f"'boxes' but no '{key}'; a data set dict needs both (see retinadet.data.catalog)."
        )
    array = np.asarray(value, dtype=dtype)
    if array.size == 0:
        array = array.reshape([0 if s == -1 else s for s in shape])
    if array.ndim != len(shape) or any(s != -1 and a != s for a, s in zip(array.shape, shape)):
        raise ValueError(
            f"'{key}' of image '{dataset_dict.get('file_name')}' (image_id {dataset_dict.get('image_id')}) "
            f"has shape {tuple(array.shape)}; expected {shape} (-1: any length)."
        )
    return array


class DatasetMapper:
    """Turns a data set dict (see retinadet.data.catalog) into the model's input dict.

    Output::

        {"image": uint8 tensor (3, H, W) in ``image_format`` order after augmentation,
         "height", "width": int, the ORIGINAL image size (detections are reported in it),
         "image_id", "file_name",
         "boxes": float32 tensor (N, 4) xyxy absolute pixels in the augmented image (non-crowd),
         "labels": int64 tensor (N,) contiguous,
         "crowd_boxes": float32 tensor (K, 4) xyxy, the crowd regions in the augmented image}

    Boxes are clipped to the augmented image and those left without area are dropped. The
    annotation keys are only emitted when the data set dict has "boxes".

    Args:
        is_train: only recorded (the augmentations decide what happens).
        augmentations: applied in order; each draws from the generator given to ``__call__``.
        image_format: "RGB" or "BGR".
        dataset_name: named in error messages.
    """

    def __init__(
        self,
        is_train: bool,
        augmentations: Sequence[Augmentation],
        image_format: str = "RGB",
        dataset_name: Optional[str] = None,
    ) -> None:
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"DatasetMapper image_format {image_format!r} is not one of {list(IMAGE_FORMATS)}.")
        self.is_train = is_train
        self.augmentations = list(augmentations)
        self.image_format = image_format
        self.dataset_name = dataset_name

    @classmethod
    def from_config(cls, cfg: Any, is_train: bool, dataset_name: Optional[str] = None) -> Dict[str, Any]:
        """Arguments from INPUT.FORMAT and the INPUT.* sizes (see :func:`build_augmentations`)."""
        return {
            "is_train": is_train,
            "augmentations": build_augmentations(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "dataset_name": dataset_name,
        }

    def _where(self, dataset_dict: Dict) -> str:
        where = f"image '{dataset_dict.get('file_name')}' (image_id {dataset_dict.get('image_id')}"
        return where + (f", data set '{self.dataset_name}')" if self.dataset_name else ")")

    def _check_image_size(self, dataset_dict: Dict, image: np.ndarray) -> None:
        declared = (dataset_dict.get("height"), dataset_dict.get("width"))
        if None in declared:
            return
        if tuple(image.shape[:2]) != (int(declared[0]), int(declared[1])):
            raise ValueError(
                f"{self._where(dataset_dict)} has (height, width) = {tuple(image.shape[:2])} after applying "
                f"its EXIF orientation, but the data set declares {declared}; the annotations would not "
                "fit the pixels. Fix the annotation file or the image."
            )

    def __call__(self, dataset_dict: Dict, rng: Optional[np.random.Generator] = None) -> Dict[str, Any]:
        """Map one data set dict (left unmodified); ``rng`` drives the random augmentations
        (a fresh unseeded generator when None, which is fine for deterministic test resizing)."""
        if rng is None:
            rng = np.random.default_rng()
        file_name = dataset_dict["file_name"]
        image = read_image(file_name, self.image_format, dataset_name=self.dataset_name)
        self._check_image_size(dataset_dict, image)
        original_hw = image.shape[:2]

        has_boxes = "boxes" in dataset_dict
        if has_boxes:
            boxes = _annotation_array(dataset_dict, "boxes", np.float32, (-1, 4))
            n = len(boxes)
            labels = _annotation_array(dataset_dict, "labels", np.int64, (n,))
            iscrowd = _annotation_array(dataset_dict, "iscrowd", bool, (n,), default=np.zeros(n, dtype=bool))
            crowd_boxes, boxes, labels = boxes[iscrowd], boxes[~iscrowd], labels[~iscrowd]

        for augmentation in self.augmentations:
            transform = augmentation.get_transform(image.shape[:2], rng)
            image = transform.apply_image(image)
            if has_boxes:
                boxes = transform.apply_boxes(boxes)
                crowd_boxes = transform.apply_boxes(crowd_boxes)

        result: Dict[str, Any] = {
            # HWC -> CHW; the copy makes the tensor own contiguous memory.
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "height": int(dataset_dict.get("height", original_hw[0])),
            "width": int(dataset_dict.get("width", original_hw[1])),
            "image_id": dataset_dict.get("image_id"),
            "file_name": file_name,
        }
        if has_boxes:
            boxes, keep = clip_and_filter_boxes(boxes, image.shape[:2])
            crowd_boxes, keep_crowd = clip_and_filter_boxes(crowd_boxes, image.shape[:2])
            result["boxes"] = torch.from_numpy(boxes[keep])
            result["labels"] = torch.from_numpy(labels[keep])
            result["crowd_boxes"] = torch.from_numpy(crowd_boxes[keep_crowd])
        return result

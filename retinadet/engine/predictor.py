"""DefaultPredictor: one call from an image (array or file) to detections in that image's frame."""
import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from ..checkpoint import read_checkpoint_meta
from ..config import CfgNode
from ..data import MetadataCatalog, read_image, register_builtin_datasets
from ..data.image_io import check_uint8_image
from ..data.mapper import build_augmentations
from ..modeling import build_model

__all__ = ["DefaultPredictor", "class_names_of"]

ImageInput = Union[np.ndarray, str, os.PathLike]


class DefaultPredictor:
    """The model of ``cfg`` (built, ``MODEL.WEIGHTS`` loaded, eval mode) behind a one-image call.

    ``predictor(image)`` takes an (H, W, 3) uint8 array in ``cfg.INPUT.FORMAT`` channel order, or an
    image file (read in that order, EXIF orientation applied), resizes it as the test loader does
    (``INPUT.MIN_SIZE_TEST``, ``INPUT.MAX_SIZE_TEST``) and returns
    ``{"boxes": (D, 4) float32 xyxy in pixels of the given image, "scores": (D,), "labels": (D,) int64,
    "class_names": D names}``, best score first. The class names come from the checkpoint's metadata
    (``meta.thing_classes``, saved by the trainer), else from the metadata of the config's first test or
    training data set; without either, a label's name is its number.

    ``predictor.predict_batch(images)`` does the same for a list of images in one forward pass per
    ``TEST.IMS_PER_BATCH`` images.

    ``MODEL.INFERENCE_BACKEND`` chooses what runs the model: "eager" (PyTorch), "compile" (MODEL.COMPILE),
    or "torchscript", "onnxruntime", "openvino": the model is exported at start-up (without the resize,
    which stays the data pipeline's), checked against the eager model, and run image by image by that
    runtime. ``MODEL.INFERENCE_PRECISION`` "bfloat16" runs eager/compile under CPU autocast and OpenVINO
    with bf16 inference; expect scores to move by about 1e-2 then.
    """

    def __init__(self, cfg: CfgNode) -> None:
        from ..export.inference_model import check_inference_backend, wrap_for_inference

        self.backend, self.precision = check_inference_backend(cfg)
        self.cfg = cfg.clone()
        self.cfg.freeze()
        self.input_format = self.cfg.INPUT.FORMAT
        self.augmentations = build_augmentations(self.cfg, is_train=False)
        self.class_names = class_names_of(self.cfg)
        # The model as built (weights loaded), and what runs it (the same module for eager float32).
        self.model = build_model(self.cfg).eval()
        self.runner = wrap_for_inference(self.cfg, self.model, class_names=self.class_names)

    def __call__(self, image: ImageInput) -> Dict[str, Any]:
        """Detections of one image (see the class docstring)."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[ImageInput]) -> List[Dict[str, Any]]:
        """Detections of each image, in order; batches of ``TEST.IMS_PER_BATCH`` images."""
        batch_size = max(1, int(self.cfg.TEST.IMS_PER_BATCH))
        results: List[Dict[str, Any]] = []
        for start in range(0, len(images), batch_size):
            inputs = [self._prepare(image, start + k) for k, image in enumerate(images[start:start + batch_size])]
            results += [self._named(output) for output in self._run(inputs)]
        return results

    def _run(self, inputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Detections of prepared inputs, in their original frames, by the configured backend."""
        with torch.no_grad():
            return self.runner(inputs)

    def _prepare(self, image: ImageInput, index: int) -> Dict[str, Any]:
        """The model's input dict of one image: the resized (3, h, w) uint8 tensor and the original size."""
        if isinstance(image, (str, os.PathLike)):
            image = read_image(os.fspath(image), self.input_format)
        check_uint8_image(image, channels_first=False, where=f"DefaultPredictor: image {index}",
                          accepted=f"an (H, W, 3) uint8 numpy array in INPUT.FORMAT {self.input_format} or an "
                          "image file path",
                          layout_hint=f"in INPUT.FORMAT {self.input_format} (a gray image: stack it to 3 channels)")
        height, width = image.shape[:2]
        resized = image
        for augmentation in self.augmentations:
            transform = augmentation.get_transform((resized.shape[0], resized.shape[1]), np.random.default_rng(0))
            resized = transform.apply_image(resized)
        tensor = torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        return {"image": tensor, "height": height, "width": width}

    def _named(self, output: Dict[str, Any]) -> Dict[str, Any]:
        labels = output["labels"].tolist()
        names = self.class_names
        output = dict(output)
        output["class_names"] = [names[k] if names and 0 <= k < len(names) else str(k) for k in labels]
        return output


def class_names_of(cfg: CfgNode) -> Optional[List[str]]:
    """``meta.thing_classes`` of the checkpoint, else of the config's first registered test/training set."""
    if cfg.MODEL.WEIGHTS:
        names = read_checkpoint_meta(cfg.MODEL.WEIGHTS).get("thing_classes")
        if names:
            return [str(n) for n in names]
    register_builtin_datasets(cfg)  # the embedded sets' metadata (lazy: nothing is generated)
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        if name in MetadataCatalog.list():
            names = MetadataCatalog.get(name).get("thing_classes")
            if names:
                return list(names)
    return None

"""What the detectors share: the backbone and neck, and the input batch they take (checked,
normalised and padded images) and give back (detections rescaled to each input's requested size)."""
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ...registry import BACKBONE_REGISTRY, NECK_REGISTRY
from ...structures import ImageList
from ..build import build
from ..shape_spec import ShapeSpec
from .input_checks import check_pixel_normalisation, normalize_and_pad
from .postprocess import rescale_to_inputs

__all__ = ["DetectorBase"]


class DetectorBase(nn.Module):
    """Base of RetinaNet and GeneralizedRCNN: a backbone and a neck on a padded, normalised batch.

    Args:
        backbone: image ``(N, 3, Hp, Wp)`` -> dict of features; its ``size_divisibility`` (an int) is
            what the sides of the padded batch are multiples of.
        neck: backbone features -> pyramid features by name.
        pixel_mean, pixel_std: per-channel normalisation, 3 values each on the 0-255 scale, std > 0.
        drop_empty_boxes: drop detections of zero width or height after rescaling (detectron2).
    """

    # MODEL.CHANNELS_LAST sets this (modeling/compile.py): pad input batches in NHWC memory format.
    channels_last = False

    def __init__(
        self, *, backbone: nn.Module, neck: nn.Module, pixel_mean: Sequence[float], pixel_std: Sequence[float],
        drop_empty_boxes: bool = False,
    ):
        super().__init__()
        self.drop_empty_boxes = drop_empty_boxes
        check_pixel_normalisation(pixel_mean, pixel_std)
        self.backbone = backbone
        self.neck = neck
        self.size_divisibility = backbone.size_divisibility
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Arguments from cfg.MODEL: the backbone (BACKBONE_REGISTRY), the neck (NECK_REGISTRY, on the
        backbone's shapes), PIXEL_MEAN and PIXEL_STD, then the subclass's :meth:`parts_from_config`
        on the neck's shapes, built in that order."""
        backbone = build(BACKBONE_REGISTRY, cfg.MODEL.BACKBONE.NAME, cfg)
        neck = build(NECK_REGISTRY, cfg.MODEL.NECK.NAME, cfg, input_shape=backbone.output_shape())
        parts = cls.parts_from_config(cfg, neck.output_shape())
        return {"backbone": backbone, "neck": neck, "pixel_mean": cfg.MODEL.PIXEL_MEAN,
                "pixel_std": cfg.MODEL.PIXEL_STD, "drop_empty_boxes": cfg.TEST.DROP_EMPTY_BOXES, **parts}

    @classmethod
    def parts_from_config(cls, cfg, neck_shape: Dict[str, ShapeSpec]) -> dict:
        """The subclass's other ``__init__`` arguments, given the neck's ``{name: ShapeSpec}``."""
        raise NotImplementedError(f"{cls.__name__} must define parts_from_config(cfg, neck_shape).")

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: Sequence[Dict]) -> ImageList:
        """Check, normalise ((x - mean) / std) and pad the images into an ImageList."""
        return normalize_and_pad(batched_inputs, self.pixel_mean, self.pixel_std, self.size_divisibility,
                                 self.channels_last)

    def detect(self, images: ImageList) -> List[Dict[str, Tensor]]:
        """Inference on a padded, normalised batch: per image {"boxes" (D, 4) xyxy in its
        ``images.image_sizes[i]`` frame, "scores" (D,), "labels" (D,) int64}, best first, before
        :meth:`postprocess`. The exported graph (retinadet.export) traces this."""
        raise NotImplementedError(f"{type(self).__name__} must define detect(images) to run inference or export.")

    def postprocess(
        self, detections: List[Dict[str, Tensor]], image_sizes, batched_inputs: Optional[Sequence[Dict]]
    ) -> List[Dict[str, Tensor]]:
        """Detections per image ({"boxes" (D, 4) xyxy, ...} in the padded batch's image frames of
        ``image_sizes`` (h, w)), rescaled to each input's "height" x "width" when given (none
        rescaled when ``batched_inputs`` is None), without empty boxes when ``drop_empty_boxes``."""
        return rescale_to_inputs(detections, image_sizes, batched_inputs, drop_empty=self.drop_empty_boxes)

"""Faster R-CNN with FPN (Ren et al. 2015; Lin et al. 2017): backbone, neck, proposals, region heads."""
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ...registry import (
    BACKBONE_REGISTRY,
    META_ARCH_REGISTRY,
    NECK_REGISTRY,
    PROPOSAL_GENERATOR_REGISTRY,
    ROI_HEAD_REGISTRY,
)
from ...structures import ImageList
from ..build import build
from .input_checks import check_pixel_normalisation, check_targets, normalize_and_pad
from .postprocess import rescale_detections

__all__ = ["GeneralizedRCNN"]


@META_ARCH_REGISTRY.register()
class GeneralizedRCNN(nn.Module):
    """Two-stage detector: a proposal generator (RPN) then region heads on the same pyramid.

    Input: list of dicts, one per image, with "image" (3, H, W) in 0-255 in the configured channel
    order; training adds "boxes" (N, 4) xyxy and "labels" (N,) in [0, K) (optional "crowd_boxes");
    optional "height" and "width" give the size to report detections in. Training returns the
    proposal generator's losses ("loss_rpn_cls", "loss_rpn_loc") merged with the region heads'
    ("loss_cls", "loss_box_reg"); inference returns [{"boxes" (D, 4) xyxy, "scores" (D,),
    "labels" (D,) int64}] per image.

    Args:
        backbone: image (N, 3, Hp, Wp) -> dict of features; ``size_divisibility`` (default 32) sets
            the padding of the batch.
        neck: backbone features -> pyramid features by name.
        proposal_generator: ``(images, features, targets) -> (proposals, losses)``, e.g. RPN.
        roi_heads: ``(images, features, proposals, targets) -> (detections, losses)``.
        num_classes: K, object classes without background (to check the training labels).
        pixel_mean, pixel_std: per-channel normalisation, 0-255 scale.
    """

    # MODEL.CHANNELS_LAST sets this (modeling/compile.py): pad input batches in NHWC memory format.
    channels_last = False
    # MODEL.COMPILE compiles these submodules' forward (shape-static dense parts, not the matching/post-processing).
    compile_targets = ("backbone", "neck")

    def __init__(
        self,
        *,
        backbone: nn.Module,
        neck: nn.Module,
        proposal_generator: nn.Module,
        roi_heads: nn.Module,
        num_classes: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
    ):
        super().__init__()
        check_pixel_normalisation(pixel_mean, pixel_std)
        self.backbone = backbone
        self.neck = neck
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads
        self.num_classes = num_classes
        self.size_divisibility = getattr(backbone, "size_divisibility", 32)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Build every part from its registry; the neck's output shapes go to both stages."""
        backbone = build(BACKBONE_REGISTRY, cfg.MODEL.BACKBONE.NAME, cfg)
        neck = build(NECK_REGISTRY, cfg.MODEL.NECK.NAME, cfg, input_shape=backbone.output_shape())
        neck_shape = neck.output_shape()
        return {
            "backbone": backbone,
            "neck": neck,
            "proposal_generator": build(
                PROPOSAL_GENERATOR_REGISTRY, cfg.MODEL.PROPOSAL_GENERATOR.NAME, cfg, input_shape=neck_shape
            ),
            "roi_heads": build(ROI_HEAD_REGISTRY, cfg.MODEL.ROI_HEADS.NAME, cfg, input_shape=neck_shape),
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: Sequence[Dict]) -> ImageList:
        """Check, normalise ((x - mean) / std) and pad the images into an ImageList."""
        return normalize_and_pad(batched_inputs, self.pixel_mean, self.pixel_std, self.size_divisibility,
                                 self.channels_last)

    def forward_features(self, images: ImageList) -> Dict[str, Tensor]:
        """Pyramid features {name: (N, C, Hi, Wi)} of a padded batch."""
        return self.neck(self.backbone(images.tensor))

    def forward(self, batched_inputs: Sequence[Dict]):
        """Losses (training) or detections (inference); see the class docstring."""
        images = self.preprocess_image(batched_inputs)
        targets: Optional[List[Dict[str, Tensor]]] = None
        if self.training:
            targets = check_targets(batched_inputs, self.num_classes, "MODEL.ROI_HEADS.NUM_CLASSES")
            targets = [{k: v.to(self.device) for k, v in t.items()} for t in targets]
        features = self.forward_features(images)
        proposals, proposal_losses = self.proposal_generator(images, features, targets)
        detections, detector_losses = self.roi_heads(images, features, proposals, targets)
        if self.training:
            overlap = set(proposal_losses) & set(detector_losses)
            if overlap:
                raise KeyError(f"The proposal generator and the region heads both return losses {sorted(overlap)}.")
            return {**proposal_losses, **detector_losses}
        return self.postprocess(detections, images.image_sizes, batched_inputs)

    @staticmethod
    def postprocess(
        detections: List[Dict[str, Tensor]], image_sizes, batched_inputs: Sequence[Dict]
    ) -> List[Dict[str, Tensor]]:
        """Detections per image, rescaled to each input's "height" x "width" when given."""
        results = []
        for det, image_size, item in zip(detections, image_sizes, batched_inputs):
            if "height" in item and "width" in item:
                det = rescale_detections(det, image_size, (int(item["height"]), int(item["width"])))
            results.append(det)
        return results

"""Faster R-CNN with FPN (Ren et al. 2015; Lin et al. 2017): backbone, neck, proposals, region heads."""
from typing import Dict, List, Optional, Sequence

from torch import Tensor, nn

from ...registry import META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY, ROI_HEAD_REGISTRY
from ...structures import ImageList
from ..build import build
from ..shape_spec import ShapeSpec
from .base import DetectorBase
from .input_checks import check_targets

__all__ = ["GeneralizedRCNN"]


@META_ARCH_REGISTRY.register()
class GeneralizedRCNN(DetectorBase):
    """Two-stage detector: a proposal generator (RPN) then region heads on the same pyramid.

    Input: list of dicts, one per image, with "image" (3, H, W) in 0-255 in the configured channel
    order; training adds "boxes" (N, 4) xyxy and "labels" (N,) in [0, K) (optional "crowd_boxes");
    optional "height" and "width" give the size to report detections in. Training returns the
    proposal generator's losses ("loss_rpn_cls", "loss_rpn_loc") merged with the region heads'
    ("loss_cls", "loss_box_reg"); inference returns [{"boxes" (D, 4) xyxy, "scores" (D,),
    "labels" (D,) int64}] per image. Both stages match (and sample) with the step RetinaNet uses too
    (matchers/assignment.py).

    Args:
        backbone, neck, pixel_mean, pixel_std: see :class:`DetectorBase`.
        proposal_generator: ``(images, features, targets) -> (proposals, losses)``, e.g. RPN.
        roi_heads: ``(images, features, proposals, targets) -> (detections, losses)``.
        num_classes: K, object classes without background (to check the training labels).
    """

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
        drop_empty_boxes: bool = False,
    ):
        super().__init__(backbone=backbone, neck=neck, pixel_mean=pixel_mean, pixel_std=pixel_std,
                         drop_empty_boxes=drop_empty_boxes)
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads
        self.num_classes = num_classes

    @classmethod
    def parts_from_config(cls, cfg, neck_shape: Dict[str, ShapeSpec]) -> dict:
        """Both stages from their registries, on the neck's output shapes; K from MODEL.ROI_HEADS."""
        return {
            "proposal_generator": build(
                PROPOSAL_GENERATOR_REGISTRY, cfg.MODEL.PROPOSAL_GENERATOR.NAME, cfg, input_shape=neck_shape
            ),
            "roi_heads": build(ROI_HEAD_REGISTRY, cfg.MODEL.ROI_HEADS.NAME, cfg, input_shape=neck_shape),
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
        }

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
        if not self.training:
            return self.postprocess(self.detect(images), images.image_sizes, batched_inputs)
        features = self.forward_features(images)
        proposals, proposal_losses = self.proposal_generator(images, features, targets)
        _, detector_losses = self.roi_heads(images, features, proposals, targets)
        overlap = set(proposal_losses) & set(detector_losses)
        if overlap:
            raise KeyError(f"The proposal generator and the region heads both return losses {sorted(overlap)}.")
        return {**proposal_losses, **detector_losses}

    def detect(self, images: ImageList) -> List[Dict[str, Tensor]]:
        """Detections per image of a padded batch, in its ``image_sizes`` frames (see DetectorBase)."""
        features = self.forward_features(images)
        proposals, _ = self.proposal_generator(images, features, None)
        detections, _ = self.roi_heads(images, features, proposals, None)
        return detections

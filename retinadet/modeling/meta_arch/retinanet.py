"""RetinaNet (Lin et al. 2017): backbone + FPN + dense head, trained with the focal loss."""
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ...registry import (
    ANCHOR_GENERATOR_REGISTRY,
    BOX_CODER_REGISTRY,
    BOX_LOSS_REGISTRY,
    CLS_LOSS_REGISTRY,
    HEAD_REGISTRY,
    MATCHER_REGISTRY,
    META_ARCH_REGISTRY,
    SAMPLER_REGISTRY,
)
from ...structures import ImageList
from ..build import build
from ..shape_spec import ShapeSpec
from .base import DetectorBase
from .dense_losses import dense_detection_losses
from .input_checks import check_targets
from .postprocess import dense_detections

__all__ = ["RetinaNet"]


@META_ARCH_REGISTRY.register()
class RetinaNet(DetectorBase):
    """One-stage detector: every anchor of P3-P7 is classified (K sigmoids) and regressed.

    Input: list of dicts, one per image, with "image" (3, H, W) in 0-255 in the configured channel
    order; training adds "boxes" (N, 4) xyxy and "labels" (N,) in [0, K) (optional "crowd_boxes"
    (C, 4) xyxy: crowd regions, whose anchors are ignored rather than background); optional "height"
    and "width" give the size to report detections in. Training returns {"loss_cls",
    "loss_box_reg"}; inference returns [{"boxes" (D, 4) xyxy, "scores" (D,), "labels" (D,)}] per image.

    Anchors are matched (and, with a ``sampler``, sampled) by the step shared with the two-stage
    detector (matchers/assignment.py). ``sampler`` (optional, samplers/): train the class loss on the
    anchors it samples per image (e.g. 1:3 random sampling or OHEM, the paper's Table 1d) instead of
    on every non-ignored anchor; that loss is then their mean, not divided by the foreground count.
    See :class:`DetectorBase` for ``backbone``, ``neck``, ``pixel_mean`` and ``pixel_std``.
    """

    # MODEL.COMPILE compiles these submodules' forward (shape-static dense parts, not the matching/post-processing).
    compile_targets = ("backbone", "neck", "head")

    def __init__(
        self,
        *,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        anchor_generator: nn.Module,
        matcher: nn.Module,
        box_coder,
        cls_loss: nn.Module,
        box_loss: nn.Module,
        num_classes: int,
        head_in_features: Sequence[str],
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        normalize_per_image: bool = False,
        loss_normalizer_momentum: float = 0.9,
        sampler: Optional[nn.Module] = None,
        score_thresh: float = 0.05,
        topk_candidates: int = 1000,
        nms_thresh: float = 0.5,
        detections_per_image: int = 100,
        clip_before_nms: bool = True,
        drop_empty_boxes: bool = False,
    ):
        super().__init__(backbone=backbone, neck=neck, pixel_mean=pixel_mean, pixel_std=pixel_std,
                         drop_empty_boxes=drop_empty_boxes)
        self.clip_before_nms = clip_before_nms
        self.num_classes = num_classes
        self.head_in_features = list(head_in_features)
        self.head = head
        self.anchor_generator = anchor_generator
        # Training: anchors matched (and, with a sampler, sampled) by the shared step, then the losses.
        if not 0.0 <= loss_normalizer_momentum < 1.0:
            raise ValueError(f"loss_normalizer_momentum must be in [0, 1); got {loss_normalizer_momentum}.")
        self.matcher = matcher
        self.box_coder = box_coder
        self.cls_loss = cls_loss
        self.box_loss = box_loss
        self.sampler = sampler
        # EMA of the foreground count, started at 100 as in detectron2. Training state, not weights:
        # it is not in the state dict, so converted weights load without it.
        self.register_buffer("loss_normalizer", torch.tensor(100.0), persistent=False)
        self.normalize_per_image = normalize_per_image
        self.loss_normalizer_momentum = loss_normalizer_momentum
        # Inference: per level the best topk_candidates scores above score_thresh, class-aware NMS at
        # nms_thresh, the best detections_per_image kept.
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        if min(topk_candidates, detections_per_image) < 1:
            raise ValueError(
                f"RetinaNet topk_candidates = {topk_candidates} and detections_per_image = {detections_per_image} "
                "(MODEL.RETINANET.TOPK_CANDIDATES_TEST, DETECTIONS_PER_IMAGE) must both be >= 1."
            )
        self.topk_candidates = topk_candidates
        self.max_detections_per_image = detections_per_image

    @classmethod
    def parts_from_config(cls, cfg, neck_shape: Dict[str, ShapeSpec]) -> dict:
        """Head, anchors, matching, losses and settings from cfg.MODEL; shapes flow neck -> head and anchors."""
        missing = [f for f in cfg.MODEL.HEAD.IN_FEATURES if f not in neck_shape]
        if missing:
            raise ValueError(
                f"MODEL.HEAD.IN_FEATURES names {missing}, which the neck does not produce; "
                f"it produces {list(neck_shape)}."
            )
        level_shapes = [neck_shape[f] for f in cfg.MODEL.HEAD.IN_FEATURES]
        anchor_generator = build(
            ANCHOR_GENERATOR_REGISTRY, cfg.MODEL.ANCHOR_GENERATOR.NAME, cfg, input_shape=level_shapes
        )
        head = build(
            HEAD_REGISTRY, cfg.MODEL.HEAD.NAME, cfg,
            input_shape=level_shapes, num_anchors=anchor_generator.num_anchors,
        )
        rn = cfg.MODEL.RETINANET
        sampler = None
        if rn.SAMPLER.NAME:
            sampler = build(SAMPLER_REGISTRY, rn.SAMPLER.NAME, cfg, sampler_cfg=rn.SAMPLER)
        return {
            "head": head,
            "anchor_generator": anchor_generator,
            "matcher": build(MATCHER_REGISTRY, cfg.MODEL.MATCHER.NAME, cfg),
            "box_coder": build(BOX_CODER_REGISTRY, cfg.MODEL.BOX_CODER.NAME, cfg),
            "cls_loss": build(CLS_LOSS_REGISTRY, cfg.MODEL.CLS_LOSS.NAME, cfg, loss_cfg=cfg.MODEL.CLS_LOSS),
            "box_loss": build(BOX_LOSS_REGISTRY, cfg.MODEL.BOX_LOSS.NAME, cfg, loss_cfg=cfg.MODEL.BOX_LOSS),
            "num_classes": rn.NUM_CLASSES,
            "head_in_features": cfg.MODEL.HEAD.IN_FEATURES,
            "normalize_per_image": rn.NORMALIZE_PER_IMAGE,
            "loss_normalizer_momentum": rn.LOSS_NORMALIZER_MOMENTUM,
            "score_thresh": rn.SCORE_THRESH_TEST,
            "topk_candidates": rn.TOPK_CANDIDATES_TEST,
            "nms_thresh": rn.NMS_THRESH_TEST,
            "detections_per_image": rn.DETECTIONS_PER_IMAGE,
            "clip_before_nms": rn.CLIP_BEFORE_NMS,
            "sampler": sampler,
        }

    def forward_features(self, images: ImageList):
        """Dense network: (logits_per_level, deltas_per_level, anchors_per_level) for a batch."""
        pyramid = self.neck(self.backbone(images.tensor))
        features = [pyramid[f] for f in self.head_in_features]
        logits, deltas = self.head(features)
        anchors = self.anchor_generator(features, images.padded_size)
        return logits, deltas, anchors

    def forward(self, batched_inputs: Sequence[Dict]):
        """Losses (training) or detections (inference); see the class docstring."""
        images = self.preprocess_image(batched_inputs)
        if self.training:
            targets = check_targets(batched_inputs, self.num_classes)
            logits, deltas, anchors = self.forward_features(images)
            return self.losses(logits, deltas, anchors, targets)
        return self.postprocess(self.detect(images), images.image_sizes, batched_inputs)

    def detect(self, images: ImageList) -> List[Dict[str, Tensor]]:
        """Detections per image of a padded batch, in its ``image_sizes`` frames (see DetectorBase)."""
        logits, deltas, anchors = self.forward_features(images)
        return self.detections(logits, deltas, anchors, images.image_sizes)

    def detections(self, logits, deltas, anchors, image_sizes) -> List[Dict[str, Tensor]]:
        """Per image {"boxes" (D, 4) xyxy, "scores" (D,), "labels" (D,) int64} in its ``image_sizes``
        (h, w) frame, best first, from per-level (N, Ri, K) logits, (N, Ri, 4) deltas and (Ri, 4) anchors."""
        return [
            dense_detections(
                [x[i] for x in logits], [x[i] for x in deltas], anchors, image_size, self.box_coder,
                self.score_thresh, self.topk_candidates, self.nms_thresh, self.max_detections_per_image,
                self.clip_before_nms,
            )
            for i, image_size in enumerate(image_sizes)
        ]

    def losses(
        self, logits: List[Tensor], deltas: List[Tensor], anchors: List[Tensor], targets: List[Dict[str, Tensor]]
    ) -> Dict[str, Tensor]:
        """Focal loss on all non-ignored anchors and box loss on foreground anchors.

        Both are divided by the number of foreground anchors: of the batch, smoothed by an EMA when
        ``loss_normalizer_momentum`` > 0 (detectron2), or of each image then averaged
        (``normalize_per_image``, torchvision). With a sampler the class loss is instead the mean
        over the anchors sampled in the batch; the box loss is unchanged.
        """
        loss_cls, loss_box, num_pos = dense_detection_losses(
            torch.cat(logits, dim=1), torch.cat(deltas, dim=1), torch.cat(anchors), targets,
            self.matcher, self.box_coder, self.cls_loss, self.box_loss, self.normalize_per_image,
            sampler=self.sampler,
        )
        if self.normalize_per_image:
            return {"loss_cls": loss_cls, "loss_box_reg": loss_box}
        normalizer = self._update_normalizer(num_pos)
        if self.sampler is not None:
            return {"loss_cls": loss_cls, "loss_box_reg": loss_box / normalizer}
        return {"loss_cls": loss_cls / normalizer, "loss_box_reg": loss_box / normalizer}

    @torch.no_grad()
    def _update_normalizer(self, num_pos: Tensor) -> Tensor:
        """The foreground count ``num_pos`` (at least 1), or its EMA when the momentum is > 0."""
        value = num_pos.clamp(min=1).to(self.loss_normalizer)
        m = self.loss_normalizer_momentum
        if m == 0.0:
            return value
        self.loss_normalizer.mul_(m).add_((1 - m) * value)
        return self.loss_normalizer.clone()

    def inference(self, logits, deltas, anchors, image_sizes, batched_inputs: Optional[Sequence[Dict]] = None):
        """Detections per image, in each input's "height" x "width" frame when given.

        Args:
            logits, deltas: per level (N, Ri, K) and (N, Ri, 4); anchors: per level (Ri, 4) xyxy;
            image_sizes: (h, w) of each image in the padded batch.
        Returns:
            per image {"boxes" (D, 4) xyxy, "scores" (D,), "labels" (D,) int64}, best score first.
        """
        return self.postprocess(self.detections(logits, deltas, anchors, image_sizes), image_sizes, batched_inputs)

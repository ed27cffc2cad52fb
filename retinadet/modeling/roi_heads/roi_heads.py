"""Standard ROI heads of Faster R-CNN: match and sample proposals, pool, box head, Fast R-CNN outputs."""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ...registry import ROI_BOX_HEAD_REGISTRY, ROI_HEAD_REGISTRY, SAMPLER_REGISTRY
from ...structures import ImageList
from ..box_coders import DeltaXYWHBoxCoder
from ..build import build
from ..matchers import IoUMatcher, assign_targets
from ..shape_spec import ShapeSpec
from .fast_rcnn import FastRCNNPredictor, fast_rcnn_inference, fast_rcnn_losses
from .pooler import ROIPooler

__all__ = ["StandardROIHeads"]

# Largest log size ratio a decoded box may take: exp(4.135) = 1000 / 16 times the proposal's size
# (torchvision's and detectron2's bbox_xform_clip).
_SCALE_CLAMP = math.log(1000.0 / 16)


def _check_probability(name: str, key: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"StandardROIHeads {name} = {value!r} ({key}) must lie in [0, 1].")
    return float(value)


@ROI_HEAD_REGISTRY.register()
class StandardROIHeads(nn.Module):
    """Box branch of Faster R-CNN with FPN; with a torchvision-like config it computes what
    torchvision's ``RoIHeads`` computes, with background as the last class instead of the first.

    Training: the gt boxes join the proposals (``proposal_append_gt``), each proposal is matched to
    its highest-IoU gt box (``proposal_matcher``; by default IoU >= 0.5 is foreground, the rest
    background), ``sampler`` draws at most B proposals per image with at most a fraction foreground,
    and the sampled ones are pooled and scored: returns ``([], {"loss_cls", "loss_box_reg"})`` (see
    :func:`fast_rcnn_losses`). Inference: every proposal is pooled and scored: returns
    ``(detections, {})`` (see :func:`fast_rcnn_inference`).

    Parameters: ``box_head.*`` (``box_head.fc1.weight`` ... for :class:`FastRCNNFCHead`),
    ``box_predictor.cls_score.{weight, bias}``, ``box_predictor.bbox_pred.{weight, bias}``.

    Args:
        in_features: names of the pyramid maps pooled from, fine to coarse.
        box_pooler: pools ``(R, C, S, S)`` region features from those maps (:class:`ROIPooler`).
        box_head: region features -> ``(R, D)``.
        box_predictor: ``(R, D)`` -> logits ``(R, K + 1)`` and deltas ``(R, 4K)`` or ``(R, 4)``.
        proposal_matcher: ``(gt_boxes (M, 4), proposals (P, 4)[, crowd_boxes=]) -> (matched_idxs (P,),
            match_labels (P,))`` with NEGATIVE / IGNORE / POSITIVE labels.
        sampler: ``match_labels (P,) -> (positive_idx, negative_idx)``.
        box_coder: proposals <-> deltas (encode for the targets, decode for the detections).
        num_classes: K, object classes without background.
        proposal_append_gt: add each image's gt boxes to its proposals in training.
        smooth_l1_beta: box loss transition point (< 1e-5: L1).
        score_thresh, nms_thresh, min_box_size, detections_per_image: inference filters, in order:
            class score > score_thresh, both sides >= min_box_size, class-aware NMS at nms_thresh,
            best detections_per_image kept.
    """

    def __init__(
        self,
        *,
        in_features: Sequence[str],
        box_pooler: nn.Module,
        box_head: nn.Module,
        box_predictor: nn.Module,
        proposal_matcher: nn.Module,
        sampler: nn.Module,
        box_coder,
        num_classes: int,
        proposal_append_gt: bool = True,
        smooth_l1_beta: float = 0.0,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_image: int = 100,
        min_box_size: float = 0.0,
    ):
        super().__init__()
        self.in_features = list(in_features)
        self.box_pooler = box_pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.num_classes = int(num_classes)
        if getattr(box_predictor, "num_classes", num_classes) != num_classes:
            raise ValueError(
                f"StandardROIHeads num_classes = {num_classes} but the box predictor has "
                f"{box_predictor.num_classes} classes."
            )
        # Training: proposals (and gt boxes) matched and sampled by the shared step (matchers/assignment.py).
        self.proposal_matcher = proposal_matcher
        self.sampler = sampler
        if sampler.needs_losses:
            raise ValueError(
                f"StandardROIHeads samples proposals before the box head scores them, so it cannot use "
                f"{type(sampler).__name__}, which ranks examples by their loss (MODEL.ROI_HEADS.SAMPLER.NAME); "
                "use BalancedRandomSampler."
            )
        self.box_coder = box_coder
        self.proposal_append_gt = bool(proposal_append_gt)
        if not smooth_l1_beta >= 0:
            raise ValueError(
                f"StandardROIHeads smooth_l1_beta = {smooth_l1_beta!r} (MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA) "
                "must be >= 0 (0 = L1)."
            )
        self.smooth_l1_beta = float(smooth_l1_beta)
        # Inference: score threshold, size filter, class-aware NMS, best detections_per_image.
        self.score_thresh = _check_probability("score_thresh", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", score_thresh)
        self.nms_thresh = _check_probability("nms_thresh", "MODEL.ROI_HEADS.NMS_THRESH_TEST", nms_thresh)
        if isinstance(detections_per_image, bool) or int(detections_per_image) != detections_per_image \
                or detections_per_image < 1:
            raise ValueError(
                f"StandardROIHeads detections_per_image = {detections_per_image!r} "
                "(MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE) must be an integer >= 1."
            )
        self.detections_per_image = int(detections_per_image)
        if not min_box_size >= 0:
            raise ValueError(
                f"StandardROIHeads min_box_size = {min_box_size!r} (MODEL.ROI_HEADS.MIN_BOX_SIZE_TEST) must be >= 0."
            )
        self.min_box_size = float(min_box_size)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> dict:
        """Parts and arguments from cfg.MODEL.ROI_HEADS and MODEL.ROI_BOX_HEAD; ``input_shape`` is
        the neck's ``output_shape()`` (channels and stride of each map)."""
        rh, bh = cfg.MODEL.ROI_HEADS, cfg.MODEL.ROI_BOX_HEAD
        in_features = list(rh.IN_FEATURES)
        if not in_features:
            raise ValueError(f"MODEL.ROI_HEADS.IN_FEATURES is empty; name maps of the neck, among {list(input_shape)}.")
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.ROI_HEADS.IN_FEATURES = {in_features} names {missing}, which the neck does not "
                f"produce; it produces {list(input_shape)}."
            )
        channels = {f: input_shape[f].channels for f in in_features}
        if len(set(channels.values())) != 1:
            raise ValueError(
                f"MODEL.ROI_HEADS.IN_FEATURES = {in_features} have different channels {channels}; the "
                "box head needs one channel count."
            )
        strides = [input_shape[f].stride for f in in_features]
        try:
            box_pooler = ROIPooler(
                output_size=bh.POOLER_RESOLUTION,
                strides=strides,
                sampling_ratio=bh.POOLER_SAMPLING_RATIO,
                aligned=bh.POOLER_ALIGNED,
                canonical_box_size=bh.CANONICAL_BOX_SIZE,
                canonical_level=bh.CANONICAL_LEVEL,
            )
        except ValueError as e:
            raise ValueError(
                f"Cannot build the ROI pooler from MODEL.ROI_HEADS.IN_FEATURES = {in_features} (strides "
                f"{strides}) and MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = {bh.POOLER_RESOLUTION}, "
                f"POOLER_SAMPLING_RATIO = {bh.POOLER_SAMPLING_RATIO}, CANONICAL_BOX_SIZE = "
                f"{bh.CANONICAL_BOX_SIZE}, CANONICAL_LEVEL = {bh.CANONICAL_LEVEL}: {e}"
            ) from e
        num_channels = channels[in_features[0]]
        res = box_pooler.output_size
        box_head = build(ROI_BOX_HEAD_REGISTRY, bh.NAME, cfg, input_size=(num_channels, res[0], res[1]))
        if not isinstance(box_head.output_size, int):  # present: the ROIBoxHead contract requires it
            raise TypeError(
                f"The box head '{bh.NAME}' (MODEL.ROI_BOX_HEAD.NAME) has output_size = {box_head.output_size!r}; "
                "it must be the int width of its output features."
            )
        box_predictor = FastRCNNPredictor(box_head.output_size, rh.NUM_CLASSES, bh.CLS_AGNOSTIC_BBOX_REG)
        try:
            matcher = IoUMatcher(
                list(rh.IOU_THRESHOLDS), list(rh.IOU_LABELS), allow_low_quality_matches=False,
                crowd_ioa_threshold=cfg.MODEL.MATCHER.CROWD_IOA_THRESHOLD,
            )
        except ValueError as e:
            raise ValueError(
                f"MODEL.ROI_HEADS.IOU_THRESHOLDS = {list(rh.IOU_THRESHOLDS)} with IOU_LABELS = "
                f"{list(rh.IOU_LABELS)}: {e}"
            ) from e
        if not rh.SAMPLER.NAME:
            raise ValueError(
                "MODEL.ROI_HEADS.SAMPLER.NAME is empty; the ROI heads need a sampler, e.g. BalancedRandomSampler."
            )
        try:
            sampler = build(SAMPLER_REGISTRY, rh.SAMPLER.NAME, cfg, sampler_cfg=rh.SAMPLER)
        except ValueError as e:
            raise ValueError(f"MODEL.ROI_HEADS.SAMPLER: {e}") from e
        try:
            box_coder = DeltaXYWHBoxCoder(weights=tuple(bh.BBOX_REG_WEIGHTS), scale_clamp=_SCALE_CLAMP)
        except ValueError as e:
            raise ValueError(f"MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = {list(bh.BBOX_REG_WEIGHTS)}: {e}") from e
        return {
            "in_features": in_features,
            "box_pooler": box_pooler,
            "box_head": box_head,
            "box_predictor": box_predictor,
            "proposal_matcher": matcher,
            "sampler": sampler,
            "box_coder": box_coder,
            "num_classes": rh.NUM_CLASSES,
            "proposal_append_gt": rh.PROPOSAL_APPEND_GT,
            "smooth_l1_beta": bh.SMOOTH_L1_BETA,
            "score_thresh": rh.SCORE_THRESH_TEST,
            "nms_thresh": rh.NMS_THRESH_TEST,
            "detections_per_image": rh.DETECTIONS_PER_IMAGE,
            "min_box_size": rh.MIN_BOX_SIZE_TEST,
        }

    def forward(
        self,
        images: ImageList,
        features: Dict[str, Tensor],
        proposals: List[Dict[str, Tensor]],
        targets: Optional[List[Dict[str, Tensor]]] = None,
    ) -> Tuple[List[Dict[str, Tensor]], Dict[str, Tensor]]:
        """
        Args:
            images: the padded batch; only ``image_sizes`` (h, w) are used, to clip detections.
            features: pyramid maps by name, each ``(N, C, Hi, Wi)``; ``in_features`` must be there.
            proposals: per image {"boxes": (P, 4) xyxy in the padded-batch frame, ...}.
            targets: training only, per image {"boxes": (M, 4) float xyxy, "labels": (M,) int64 in
                [0, K)} and optionally "crowd_boxes" (C, 4) xyxy (proposals they cover are not
                sampled as background, see :class:`IoUMatcher`).
        Returns:
            training: ``([], {"loss_cls", "loss_box_reg"})``; inference: (per image {"boxes" (D, 4)
            xyxy, "scores" (D,), "labels" (D,) int64 in [0, K)}, ``{}``).
        """
        if len(proposals) != len(images.image_sizes):
            raise ValueError(
                f"StandardROIHeads got proposals for {len(proposals)} images and a batch of {len(images.image_sizes)}."
            )
        missing = [f for f in self.in_features if f not in features]
        if missing:
            raise ValueError(
                f"StandardROIHeads pools from {self.in_features} but features lack {missing}; got {list(features)}."
            )
        boxes = [p["boxes"].detach() for p in proposals]
        if self.training:
            self._check_targets(targets, len(boxes))
            boxes, gt_classes, gt_boxes = self.label_and_sample_proposals(boxes, targets)
        region_features = self.box_head(self.box_pooler([features[f] for f in self.in_features], boxes))
        logits, deltas = self.box_predictor(region_features)
        if self.training:
            losses = fast_rcnn_losses(
                logits, deltas, torch.cat(gt_classes), torch.cat(boxes), torch.cat(gt_boxes),
                self.box_coder, self.smooth_l1_beta,
            )
            return [], losses
        detections = fast_rcnn_inference(
            logits, deltas, boxes, images.image_sizes, self.box_coder,
            self.score_thresh, self.nms_thresh, self.min_box_size, self.detections_per_image,
        )
        return detections, {}

    @torch.no_grad()
    def label_and_sample_proposals(
        self, proposals: List[Tensor], targets: List[Dict[str, Tensor]]
    ) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """Match each image's proposals (plus its gt boxes when ``proposal_append_gt``) and sample them.

        Args:
            proposals: per image ``(P, 4)`` xyxy; targets: as in :meth:`forward`.
        Returns:
            per image, for the S sampled proposals in increasing index order (gt boxes, when
            appended, come after the proposals): boxes ``(S, 4)`` xyxy, classes ``(S,)`` int64 in
            ``[0, K]`` (K = background) and matched gt boxes ``(S, 4)`` xyxy (zeros without gt).
        """
        assignments = assign_targets(
            proposals, targets, self.proposal_matcher, self.sampler,
            num_classes=self.num_classes, append_gt=self.proposal_append_gt,
        )
        sampled_boxes, sampled_classes, sampled_gt_boxes = [], [], []
        for assigned in assignments:
            # Increasing index order, as torchvision's mask-based sampling yields.
            idx = torch.cat([assigned.positive_idx, assigned.negative_idx]).sort().values
            sampled_boxes.append(assigned.boxes[idx])
            sampled_classes.append(assigned.gt_classes[idx])
            sampled_gt_boxes.append(assigned.matched_boxes[idx])
        return sampled_boxes, sampled_classes, sampled_gt_boxes

    def _check_targets(self, targets: Optional[List[Dict[str, Tensor]]], num_images: int) -> None:
        if targets is None or len(targets) != num_images:
            got = "None" if targets is None else f"{len(targets)} targets"
            raise ValueError(f"StandardROIHeads needs one target per image in training ({num_images}); got {got}.")
        for i, t in enumerate(targets):
            if "boxes" not in t or "labels" not in t:
                raise ValueError(f"targets[{i}] must hold 'boxes' (M, 4) and 'labels' (M,); got keys {sorted(t)}.")
            boxes, labels = t["boxes"], t["labels"]
            if boxes.dim() != 2 or boxes.shape[1] != 4 or labels.shape != (boxes.shape[0],):
                raise ValueError(
                    f"targets[{i}] has boxes {tuple(boxes.shape)} and labels {tuple(labels.shape)}; "
                    "expected (M, 4) and (M,)."
                )
        labels = torch.cat([t["labels"].reshape(-1) for t in targets])
        if labels.numel() > 0:
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= self.num_classes:
                raise ValueError(
                    f"StandardROIHeads target labels span [{low}, {high}]; they must lie in "
                    f"[0, {self.num_classes}) (MODEL.ROI_HEADS.NUM_CLASSES = {self.num_classes})."
                )

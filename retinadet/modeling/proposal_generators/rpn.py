"""Region Proposal Network (Ren et al. 2015) on FPN levels (Lin et al. 2017): anchors -> proposals."""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ... import ops
from ...registry import ANCHOR_GENERATOR_REGISTRY, HEAD_REGISTRY, PROPOSAL_GENERATOR_REGISTRY, SAMPLER_REGISTRY
from ...structures import ImageList, clip_boxes
from ...utils.tracing import at_most
from ..box_coders import DeltaXYWHBoxCoder
from ..build import build
from ..losses import smooth_l1_loss
from ..matchers import POSITIVE, ImageAssignment, IoUMatcher, assign_targets
from ..shape_spec import ShapeSpec

__all__ = ["RPN"]


def _check_count(value, name: str) -> Tuple[int, int]:
    """``(train, test)`` pair of integers >= 1."""
    pair = tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or int(v) != v or v < 1 for v in pair):
        raise ValueError(f"RPN {name} = {value!r} must be a (train, test) pair of integers >= 1.")
    return int(pair[0]), int(pair[1])


@PROPOSAL_GENERATOR_REGISTRY.register()
class RPN(nn.Module):
    """Class-agnostic objectness and box deltas on every anchor of the pyramid, turned into proposals.

    Proposals (torchvision 0.29's ``RegionProposalNetwork.filter_proposals``, and detectron2's
    ``find_top_rpn_proposals`` up to the ranking noted below), per image: on each level the
    ``pre_nms_topk`` anchors of highest objectness; their deltas decoded and the boxes clipped to the
    image; boxes with a side below ``min_size`` or empty dropped; NMS at ``nms_thresh`` within each
    level; the best ``post_nms_topk`` of all levels kept. The (train, test) value of each top-k is
    chosen by ``self.training``. NMS ranks by sigmoid(logit) as torchvision does (detectron2 ranks
    by the logit: the same order except where float32 sigmoids tie near 1).

    Losses (training): anchors are matched to the gt boxes by IoU (``matcher``), and the sampler
    draws the anchors of each image that enter the losses (256 at 1:1 by default).
    ``loss_rpn_cls`` is binary cross-entropy with logits over the sampled anchors; ``loss_rpn_loc``
    is smooth L1 (``smooth_l1_beta``; 0 = L1) between the deltas of the sampled foreground anchors
    and their encoded gt boxes. Both are summed and divided by the number of anchors sampled in the
    batch (torchvision's convention; detectron2 divides by batch_size_per_image x images, which is
    the same whenever every image fills its sample), then multiplied by ``loss_weight``.

    Args:
        in_features: names of the neck outputs used, finest first (e.g. p2-p6).
        head: module mapping the list of those features to (objectness (N, Ri), deltas (N, Ri, 4))
            per level, e.g. StandardRPNHead.
        anchor_generator: module mapping (features, padded size) to (Ri, 4) xyxy anchors per level.
        matcher: IoUMatcher (NEGATIVE / IGNORE / POSITIVE per anchor).
        sampler: a SAMPLER_REGISTRY module, ``sampler(match_labels (R,)[, losses (R,), boxes (R, 4)])
            -> (positive_idx, negative_idx)``; samplers with ``needs_losses`` get the per-anchor
            losses and predicted boxes.
        box_coder: DeltaXYWHBoxCoder of the deltas.
        smooth_l1_beta: transition point of the box loss, >= 0.
        loss_weight: multiplier of both losses, >= 0.
        pre_nms_topk: (train, test) anchors kept per level before NMS.
        post_nms_topk: (train, test) proposals kept per image after NMS.
        nms_thresh: IoU threshold of the per-level NMS, in [0, 1].
        min_size: proposals with a side below this (pixels) are dropped, >= 0; empty ones always.
    """

    def __init__(
        self,
        *,
        in_features: Sequence[str],
        head: nn.Module,
        anchor_generator: nn.Module,
        matcher: nn.Module,
        sampler: nn.Module,
        box_coder,
        smooth_l1_beta: float = 0.0,
        loss_weight: float = 1.0,
        pre_nms_topk: Sequence[int] = (2000, 1000),
        post_nms_topk: Sequence[int] = (2000, 1000),
        nms_thresh: float = 0.7,
        min_size: float = 0.0,
    ):
        super().__init__()
        self.in_features = list(in_features)
        if not self.in_features:
            raise ValueError("RPN in_features (MODEL.RPN.IN_FEATURES) is empty; name at least one neck output.")
        self.head = head
        self.anchor_generator = anchor_generator
        # Training: anchors matched and sampled by the shared step (matchers/assignment.py), then the losses.
        self.matcher = matcher
        self.sampler = sampler
        self.box_coder = box_coder
        for name, value in (("smooth_l1_beta", smooth_l1_beta), ("loss_weight", loss_weight), ("min_size", min_size)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"RPN {name} = {value!r} must be a finite number >= 0.")
        self.smooth_l1_beta = float(smooth_l1_beta)
        self.loss_weight = float(loss_weight)
        # Proposals: the best anchors of each level, NMS within each level, the best of all levels.
        self.pre_nms_topk = _check_count(pre_nms_topk, "pre_nms_topk")
        self.post_nms_topk = _check_count(post_nms_topk, "post_nms_topk")
        if not 0.0 <= nms_thresh <= 1.0:
            raise ValueError(f"RPN nms_thresh = {nms_thresh!r} (MODEL.RPN.NMS_THRESH) must lie in [0, 1].")
        self.nms_thresh = float(nms_thresh)
        self.min_size = float(min_size)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> dict:
        """Parts and values from cfg.MODEL.RPN (and ANCHOR_GENERATOR); shapes from the neck."""
        rpn = cfg.MODEL.RPN
        missing = [f for f in rpn.IN_FEATURES if f not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.RPN.IN_FEATURES names {missing}, which the neck does not produce; "
                f"it produces {list(input_shape)}."
            )
        level_shapes = [input_shape[f] for f in rpn.IN_FEATURES]
        anchor_generator = build(
            ANCHOR_GENERATOR_REGISTRY, cfg.MODEL.ANCHOR_GENERATOR.NAME, cfg, input_shape=level_shapes
        )
        head = build(
            HEAD_REGISTRY, rpn.HEAD_NAME, cfg, input_shape=level_shapes, num_anchors=anchor_generator.num_anchors
        )
        return {
            "in_features": list(rpn.IN_FEATURES),
            "head": head,
            "anchor_generator": anchor_generator,
            "matcher": IoUMatcher(
                thresholds=list(rpn.IOU_THRESHOLDS),
                labels=list(rpn.IOU_LABELS),
                allow_low_quality_matches=rpn.ALLOW_LOW_QUALITY_MATCHES,
                crowd_ioa_threshold=cfg.MODEL.MATCHER.CROWD_IOA_THRESHOLD,
            ),
            "sampler": build(SAMPLER_REGISTRY, rpn.SAMPLER.NAME, cfg, sampler_cfg=rpn.SAMPLER),
            "box_coder": DeltaXYWHBoxCoder(
                weights=tuple(rpn.BBOX_REG_WEIGHTS), scale_clamp=cfg.MODEL.BOX_CODER.SCALE_CLAMP
            ),
            "smooth_l1_beta": rpn.SMOOTH_L1_BETA,
            "loss_weight": rpn.LOSS_WEIGHT,
            "pre_nms_topk": (rpn.PRE_NMS_TOPK_TRAIN, rpn.PRE_NMS_TOPK_TEST),
            "post_nms_topk": (rpn.POST_NMS_TOPK_TRAIN, rpn.POST_NMS_TOPK_TEST),
            "nms_thresh": rpn.NMS_THRESH,
            "min_size": rpn.MIN_SIZE,
        }

    def forward_features(
        self, images: ImageList, features: Dict[str, Tensor]
    ) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """Raw head outputs and anchors per level of ``in_features``.

        Returns:
            objectness: list of (N, Ri) logits; deltas: list of (N, Ri, 4); anchors: list of
            (Ri, 4) xyxy in the padded-batch frame. Ri = Hi * Wi * A, ordered by row, column, anchor.
        """
        levels = [features[f] for f in self.in_features]
        objectness, deltas = self.head(levels)
        anchors = self.anchor_generator(levels, images.padded_size)
        return objectness, deltas, anchors

    def forward(
        self,
        images: ImageList,
        features: Dict[str, Tensor],
        targets: Optional[List[Dict[str, Tensor]]] = None,
    ) -> Tuple[List[Dict[str, Tensor]], Dict[str, Tensor]]:
        """Proposals per image and, in training, the RPN losses.

        Args:
            images: the padded batch (only its sizes are used).
            features: neck outputs by name, each (N, C, Hi, Wi).
            targets: per image {"boxes": (M, 4) xyxy, optional "crowd_boxes": (K, 4) xyxy};
                required in training.

        Returns:
            proposals: per image {"boxes": (P, 4) xyxy clipped to ``images.image_sizes[i]``,
            "objectness_logits": (P,)}, best first, detached.
            losses: {"loss_rpn_cls", "loss_rpn_loc"} in training, {} in eval.
        """
        objectness, deltas, anchors = self.forward_features(images, features)
        proposals = self.predict_proposals(objectness, deltas, anchors, images.image_sizes)
        losses: Dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("RPN in training mode needs targets (a list of {'boxes': (M, 4)} per image).")
            losses = self.losses(objectness, deltas, anchors, targets)
        return proposals, losses

    @torch.no_grad()
    def predict_proposals(
        self,
        objectness: List[Tensor],
        deltas: List[Tensor],
        anchors: List[Tensor],
        image_sizes: Sequence[Tuple[int, int]],
    ) -> List[Dict[str, Tensor]]:
        """Proposals per image from per-level (N, Ri) logits, (N, Ri, 4) deltas and (Ri, 4) anchors.

        Returns [{"boxes": (P, 4) xyxy, "objectness_logits": (P,)}], P <= post_nms_topk, best first.
        """
        pre_topk = self.pre_nms_topk[0 if self.training else 1]
        post_topk = self.post_nms_topk[0 if self.training else 1]
        num_images = len(image_sizes)
        device = objectness[0].device
        batch_idx = torch.arange(num_images, device=device)[:, None]
        boxes, logits, levels = [], [], []
        for level, (logits_i, deltas_i, anchors_i) in enumerate(zip(objectness, deltas, anchors)):
            k = at_most(logits_i.shape[1], pre_topk)
            top_logits, top_idx = logits_i.detach().topk(k, dim=1)  # (N, k)
            top_deltas = deltas_i.detach()[batch_idx, top_idx]  # (N, k, 4)
            top_anchors = anchors_i[top_idx]  # (N, k, 4)
            decoded = self.box_coder.decode(top_deltas.reshape(-1, 4), top_anchors.reshape(-1, 4))
            boxes.append(decoded.view(num_images, -1, 4))
            logits.append(top_logits)
            levels.append(torch.full_like(top_idx[0], level))
        boxes, logits, levels = torch.cat(boxes, dim=1), torch.cat(logits, dim=1), torch.cat(levels)

        results = []
        for i, image_size in enumerate(image_sizes):
            image_boxes = clip_boxes(boxes[i], image_size)
            widths = image_boxes[:, 2] - image_boxes[:, 0]
            heights = image_boxes[:, 3] - image_boxes[:, 1]
            keep = (widths >= self.min_size) & (heights >= self.min_size) & (widths > 0) & (heights > 0)
            keep = keep.nonzero().squeeze(1)
            image_boxes, image_logits, image_levels = image_boxes[keep], logits[i][keep], levels[keep]
            keep = ops.batched_nms(image_boxes, image_logits.sigmoid(), image_levels, self.nms_thresh)
            keep = keep[:post_topk]
            results.append({"boxes": image_boxes[keep], "objectness_logits": image_logits[keep]})
        return results

    def losses(
        self,
        objectness: List[Tensor],
        deltas: List[Tensor],
        anchors: List[Tensor],
        targets: List[Dict[str, Tensor]],
    ) -> Dict[str, Tensor]:
        """{"loss_rpn_cls", "loss_rpn_loc"} of a batch; see the class docstring for the normalisation."""
        anchors = torch.cat(anchors)  # (R, 4)
        logits = torch.cat(objectness, dim=1)  # (N, R)
        deltas = torch.cat(deltas, dim=1)  # (N, R, 4)
        num_anchors = anchors.shape[0]
        if len(targets) != logits.shape[0]:
            raise ValueError(f"RPN got {len(targets)} targets for a batch of {logits.shape[0]} images.")
        assignments = assign_targets(
            anchors, targets, self.matcher, self.sampler,
            example_losses=lambda assigned: (
                self._example_losses(logits[i], deltas[i], a) for i, a in enumerate(assigned)
            ),
        )
        pos_rows = [a.positive_idx + i * num_anchors for i, a in enumerate(assignments)]
        neg_rows = [a.negative_idx + i * num_anchors for i, a in enumerate(assignments)]
        pos_gt = [a.matched_boxes[a.positive_idx] for a in assignments]
        pos_rows, neg_rows, pos_gt = torch.cat(pos_rows), torch.cat(neg_rows), torch.cat(pos_gt)
        normalizer = max(pos_rows.numel() + neg_rows.numel(), 1)

        flat_logits = logits.reshape(-1)
        sampled = torch.cat((pos_rows, neg_rows))
        labels = torch.cat((torch.ones_like(pos_rows), torch.zeros_like(neg_rows))).to(flat_logits.dtype)
        loss_cls = F.binary_cross_entropy_with_logits(flat_logits[sampled], labels, reduction="sum")
        pos_deltas = deltas.reshape(-1, 4)[pos_rows]
        gt_deltas = self.box_coder.encode(pos_gt, anchors[pos_rows % num_anchors]).to(pos_deltas.dtype)
        loss_loc = smooth_l1_loss(pos_deltas, gt_deltas, self.smooth_l1_beta).sum()
        scale = self.loss_weight / normalizer
        return {"loss_rpn_cls": loss_cls * scale, "loss_rpn_loc": loss_loc * scale}

    @torch.no_grad()
    def _example_losses(self, logits: Tensor, deltas: Tensor, assignment: ImageAssignment) -> Tuple[Tensor, Tensor]:
        """What a sampler with ``needs_losses`` ranks one image's anchors by: each anchor's loss (R,)
        (cross-entropy, plus the box loss on foreground) and its predicted box (R, 4) xyxy.

        Args:
            logits: (R,) objectness; deltas: (R, 4); assignment: the image's match (anchors (R, 4) xyxy).
        """
        anchors = assignment.boxes
        positive = assignment.match_labels == POSITIVE
        losses = F.binary_cross_entropy_with_logits(logits, positive.to(logits.dtype), reduction="none")
        pos = positive.nonzero().squeeze(1)
        if pos.numel() > 0:
            target = self.box_coder.encode(assignment.matched_boxes[pos], anchors[pos]).to(deltas.dtype)
            losses[pos] += smooth_l1_loss(deltas[pos], target, self.smooth_l1_beta).sum(dim=1)
        return losses, self.box_coder.decode(deltas, anchors)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, pre_nms_topk={self.pre_nms_topk}, "
            f"post_nms_topk={self.post_nms_topk}, nms_thresh={self.nms_thresh}, min_size={self.min_size}, "
            f"smooth_l1_beta={self.smooth_l1_beta}, loss_weight={self.loss_weight}"
        )

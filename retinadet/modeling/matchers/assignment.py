"""The matching-and-sampling step shared by RetinaNet, the RPN and the ROI heads.

Inputs (:func:`assign_targets`), per batch:
    anchors: ``(A, 4)`` xyxy shared by every image, or one ``(A_i, 4)`` xyxy tensor per image (proposals);
    targets: per image {"boxes": gt boxes ``(G, 4)`` xyxy, "labels": ``(G,)`` int64 in [0, K) (optional),
        "crowd_boxes": crowd regions ``(C, 4)`` xyxy (optional; COCO ``iscrowd`` boxes, kept apart
        from the gt boxes rather than flagged among them)};
    matcher: e.g. IoUMatcher; sampler (optional): a SAMPLER_REGISTRY sampler;
    num_classes (K, optional), append_gt, example_losses (for a sampler with ``needs_losses``).

Outputs, per image, an :class:`ImageAssignment`: the candidates matched, the matched gt index per
candidate ``(A,)``, its label ``(A,)`` (POSITIVE foreground / NEGATIVE background / IGNORE), its
matched gt box ``(A, 4)`` xyxy, its class ``(A,)`` (K = background) and the sampled foreground and
background indices.

The step, image by image:

1. optionally appends the gt boxes to the candidates (the ROI heads' ``proposal_append_gt``);
2. matches every candidate with ``matcher(gt_boxes, candidates[, crowd_boxes=])``: the matcher gives
   each candidate its best gt and a label from its IoU intervals (the ignore band between the
   thresholds, low-quality matches), and turns the NEGATIVE candidates that a crowd region covers
   into IGNORE (crowd regions hold objects: they must not be trained as background);
3. reads off each candidate's matched gt box, and its class when ``num_classes`` is given (K where
   not POSITIVE; the RPN's objectness needs none);
4. with a sampler, draws the examples of each image: ``sampler(match_labels)``, or, for a sampler
   whose ``needs_losses`` is true (OHEM), ``sampler(match_labels, losses, boxes)`` with each
   candidate's loss and predicted box from the caller's ``example_losses``.

Every image is matched before any is sampled, so ``example_losses`` sees the whole batch's matches
(RetinaNet computes its per-anchor losses batched); samplers are called in image order, so the
random numbers they draw are the same as with a per-image loop.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .iou_matcher import POSITIVE

__all__ = ["ImageAssignment", "assign_targets", "match_image", "sample_image"]

# example_losses(assignments) -> per image (losses (A,), predicted boxes (A, 4) xyxy), without gradient.
ExampleLosses = Callable[[List["ImageAssignment"]], Iterable[Tuple[Tensor, Tensor]]]


@dataclass
class ImageAssignment:
    """What :func:`assign_targets` found for one image's A candidates (anchors or proposals).

    Attributes:
        boxes: ``(A, 4)`` xyxy, the candidates that were matched (the image's gt boxes come last
            when they were appended).
        matched_idxs: ``(A,)`` int64, index of each candidate's best gt box in the image's G gt
            boxes (0 when G = 0; meaningful only where POSITIVE).
        match_labels: ``(A,)`` int8, the matcher's NEGATIVE (0) / IGNORE (-1) / POSITIVE (1).
        matched_boxes: ``(A, 4)`` xyxy, each candidate's best gt box (zeros when G = 0; meaningful
            only where POSITIVE).
        gt_classes: ``(A,)`` int64, the class of the matched gt box where POSITIVE and
            ``num_classes`` (background) elsewhere; None when no ``num_classes`` was given.
        positive_idx, negative_idx: ``(P,)`` and ``(Q,)`` int64 indices into A of the sampled
            foreground and background, in the sampler's order; None without a sampler.
    """

    boxes: Tensor
    matched_idxs: Tensor
    match_labels: Tensor
    matched_boxes: Tensor
    gt_classes: Optional[Tensor] = None
    positive_idx: Optional[Tensor] = None
    negative_idx: Optional[Tensor] = None


def match_image(
    candidates: Tensor,
    target: Dict[str, Tensor],
    matcher: Callable,
    num_classes: Optional[int] = None,
    append_gt: bool = False,
) -> ImageAssignment:
    """Match one image's candidates to its targets (steps 1-3 of the module docstring).

    Args:
        candidates: ``(A, 4)`` xyxy anchors or proposals.
        target: {"boxes": ``(G, 4)`` xyxy, optional "labels": ``(G,)`` int in [0, K), optional
            "crowd_boxes": ``(C, 4)`` xyxy}; boxes are moved to the candidates' device and dtype.
        matcher: ``(gt_boxes (G, 4), candidates (A, 4)[, crowd_boxes=(C, 4)]) -> (matched_idxs (A,),
            match_labels (A,))``; crowd boxes are passed only when C > 0.
        num_classes: K; when given, ``gt_classes`` is filled from ``target["labels"]``.
        append_gt: match ``cat([candidates, gt_boxes])`` instead of ``candidates``.

    Returns:
        an :class:`ImageAssignment` without samples.
    """
    gt_boxes = target["boxes"].to(device=candidates.device, dtype=candidates.dtype)
    if append_gt:
        candidates = torch.cat([candidates, gt_boxes])
    crowd = target.get("crowd_boxes")
    if crowd is not None and crowd.numel() > 0:
        crowd = crowd.to(device=candidates.device, dtype=candidates.dtype)
        matched_idxs, match_labels = matcher(gt_boxes, candidates, crowd_boxes=crowd)
    else:
        matched_idxs, match_labels = matcher(gt_boxes, candidates)
    has_gt = gt_boxes.shape[0] > 0
    matched_boxes = gt_boxes[matched_idxs] if has_gt else torch.zeros_like(candidates)
    gt_classes = None
    if num_classes is not None:
        gt_labels = target["labels"].to(device=candidates.device, dtype=torch.int64)
        classes = gt_labels[matched_idxs] if has_gt else torch.zeros_like(matched_idxs)
        gt_classes = torch.where(match_labels == POSITIVE, classes, torch.full_like(classes, num_classes))
    return ImageAssignment(candidates, matched_idxs, match_labels, matched_boxes, gt_classes)


def sample_image(
    assignment: ImageAssignment, sampler: Callable, losses: Optional[Tensor] = None, boxes: Optional[Tensor] = None
) -> ImageAssignment:
    """Fill ``assignment.positive_idx`` / ``negative_idx`` from ``sampler`` (step 4); returns it.

    ``sampler(match_labels)`` when ``losses`` is None, else ``sampler(match_labels, losses (A,),
    boxes (A, 4) xyxy)``.
    """
    if losses is None:
        pos, neg = sampler(assignment.match_labels)
    else:
        pos, neg = sampler(assignment.match_labels, losses, boxes)
    assignment.positive_idx, assignment.negative_idx = pos, neg
    return assignment


def assign_targets(
    anchors: Union[Tensor, Sequence[Tensor]],
    targets: Sequence[Dict[str, Tensor]],
    matcher: Callable,
    sampler: Optional[Callable] = None,
    *,
    num_classes: Optional[int] = None,
    append_gt: bool = False,
    example_losses: Optional[ExampleLosses] = None,
) -> List[ImageAssignment]:
    """Match (and optionally sample) the candidates of every image of a batch; see the module docstring.

    Args:
        anchors: ``(A, 4)`` xyxy shared by every image (dense detectors, RPN), or one ``(A_i, 4)``
            xyxy tensor per image (proposals).
        targets: per image {"boxes": ``(G, 4)`` xyxy, optional "labels": ``(G,)`` int64 in [0, K),
            optional "crowd_boxes": ``(C, 4)`` xyxy crowd regions}.
        matcher: e.g. :class:`IoUMatcher`; see :func:`match_image`.
        sampler: None (nothing sampled), or a SAMPLER_REGISTRY sampler, called once per image in
            image order.
        num_classes: K, the background class index; when given, ``gt_classes`` is filled (the
            targets must carry "labels"). None: class-agnostic (e.g. RPN objectness).
        append_gt: add each image's gt boxes after its candidates (Fast R-CNN training).
        example_losses: required when ``sampler.needs_losses``: called once, after every image is
            matched, with the list of assignments; gives per image (in order) ``(losses (A,),
            boxes (A, 4) xyxy)``, each candidate's loss and predicted box, without gradient. It may
            be a generator: each image's pair is taken just before that image is sampled.

    Returns:
        one :class:`ImageAssignment` per image.
    """
    if not isinstance(anchors, Tensor) and len(anchors) != len(targets):
        raise ValueError(f"assign_targets got candidates for {len(anchors)} images and {len(targets)} targets.")
    per_image = [anchors] * len(targets) if isinstance(anchors, Tensor) else anchors
    assignments = [match_image(a, t, matcher, num_classes, append_gt) for a, t in zip(per_image, targets)]
    if sampler is None:
        return assignments
    if not sampler.needs_losses:
        return [sample_image(a, sampler) for a in assignments]
    if example_losses is None:
        raise ValueError(
            f"{type(sampler).__name__} ranks examples by their loss (needs_losses), but the caller "
            "gives no example_losses to compute them."
        )
    pairs = iter(example_losses(assignments))
    for i, assignment in enumerate(assignments):
        pair = next(pairs, None)
        if pair is None:
            raise ValueError(f"example_losses gave (losses, boxes) for {i} of {len(assignments)} images.")
        sample_image(assignment, sampler, *pair)
    return assignments

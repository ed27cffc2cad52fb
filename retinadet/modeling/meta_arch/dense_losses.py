"""RetinaNet's training losses of a batch: anchors matched (and optionally sampled) by the shared
step (matchers/assignment.py), then the class loss and the box loss, before normalisation."""
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

from ..matchers import IGNORE, POSITIVE, ImageAssignment, assign_targets

__all__ = ["match_anchors", "dense_detection_losses", "per_anchor_cls_losses"]


def _stack(assignments: List[ImageAssignment]) -> Tuple[Tensor, Tensor, Tensor]:
    """(match_labels (N, R) int8, gt_classes (N, R) int64, matched_boxes (N, R, 4) xyxy) of a batch."""
    return (
        torch.stack([a.match_labels for a in assignments]),
        torch.stack([a.gt_classes for a in assignments]),
        torch.stack([a.matched_boxes for a in assignments]),
    )


def match_anchors(
    anchors: Tensor, targets: List[Dict[str, Tensor]], matcher, num_classes: int
) -> Tuple[Tensor, Tensor, Tensor]:
    """Assign each anchor a class and a gt box, image by image (the shared step, without sampling).

    Args:
        anchors: (R, 4) xyxy, shared by the batch; targets: per image {"boxes" (M, 4), "labels" (M,)}
            and optionally "crowd_boxes" (K, 4), handed to the matcher as ``crowd_boxes=`` when K > 0.

    Returns:
        match_labels (N, R) int8 (matcher labels), gt_classes (N, R) int64 (``num_classes`` where not
        POSITIVE), matched_boxes (N, R, 4) xyxy (meaningful where POSITIVE).
    """
    return _stack(assign_targets(anchors, targets, matcher, num_classes=num_classes))


# On CPU the class loss runs on row chunks of this many elements (1 MiB of float32). The focal loss
# makes a dozen temporaries as large as its input, forward and backward: chunks of this size stay in
# cache and are recycled by the allocator, where whole-image tensors (R x K, 18 MB for a 512 x 512
# image at K = 91) are mapped and faulted in afresh each step; the loss segment of a 512 x 512
# training step takes ~20% less time (benchmarks/model.py). Accelerators keep one chunk per summed
# group: their allocators cache memory and every extra chunk costs kernel launches.
_CPU_CHUNK_ELEMENTS = 1 << 18


def _class_targets(gt_classes: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """``(M, K)`` one-hot rows of ``gt_classes (M,)``; ``num_classes`` (not POSITIVE) gives a zero row.

    Equal to ``F.one_hot(gt_classes, K + 1)[:, :K]``, written as zeros plus one write per foreground
    anchor rather than through an int64 (M, K + 1) tensor.
    """
    targets = torch.zeros((gt_classes.shape[0], num_classes), dtype=dtype, device=gt_classes.device)
    fg = (gt_classes < num_classes).nonzero().squeeze(1)
    targets[fg, gt_classes[fg]] = 1.0
    return targets


def _cls_loss_of_rows(logits: Tensor, match_labels: Tensor, gt_classes: Tensor, cls_loss) -> Tensor:
    """``cls_loss`` summed over the non-ignored rows of ``logits (M, K)``."""
    valid = (match_labels != IGNORE).nonzero().squeeze(1)
    if valid.numel() < match_labels.numel():
        # By index, not by boolean mask: one nonzero, and a backward that copies rows into place.
        logits = logits.index_select(0, valid)
        gt_classes = gt_classes.index_select(0, valid)
    return cls_loss(logits, _class_targets(gt_classes, logits.shape[-1], logits.dtype))


def _cls_loss_sums(
    logits: Tensor, match_labels: Tensor, gt_classes: Tensor, cls_loss, groups: int
) -> List[Tensor]:
    """Class loss of ``logits (N, R, K)`` summed over each of ``groups`` (N or 1) equal runs of images.

    The rows are cut into chunks (see _CPU_CHUNK_ELEMENTS) by one split of the flattened batch, so
    the backward joins their gradients in a single copy; the losses are sums, so summing over
    chunks is summing over rows.
    """
    num_rows, num_classes = logits.shape[0] * logits.shape[1], logits.shape[2]
    group_rows = num_rows // groups
    chunk = group_rows
    if logits.device.type == "cpu":
        chunk = min(group_rows, _CPU_CHUNK_ELEMENTS // max(num_classes, 1))
    chunk = max(chunk, 1)
    sizes = [chunk] * (group_rows // chunk) + ([group_rows % chunk] if group_rows % chunk else [])
    chunks = zip(
        logits.reshape(num_rows, num_classes).split(sizes * groups),
        match_labels.reshape(-1).split(sizes * groups),
        gt_classes.reshape(-1).split(sizes * groups),
    )
    sums: List[Tensor] = [None] * groups
    for j, (x, labels, classes) in enumerate(chunks):
        loss, g = _cls_loss_of_rows(x, labels, classes, cls_loss), j // len(sizes)
        sums[g] = loss if sums[g] is None else sums[g] + loss
    return [logits.new_zeros(()) if loss is None else loss for loss in sums]


def _box_loss_sums(
    deltas: Tensor,
    anchors: Tensor,
    match_labels: Tensor,
    matched_boxes: Tensor,
    box_coder,
    box_loss,
    groups: int,
) -> List[Tensor]:
    """Box loss over the POSITIVE anchors, summed over each of ``groups`` (N or 1) equal runs of images.

    Args:
        deltas (N, R, 4), anchors (R, 4) xyxy, match_labels (N, R), matched_boxes (N, R, 4) xyxy.
    """
    num_anchors = anchors.shape[0]
    sums = []
    for d, labels, boxes in zip(
        deltas.reshape(groups, -1, 4).unbind(0),
        match_labels.reshape(groups, -1),
        matched_boxes.reshape(groups, -1, 4),
    ):
        pos = (labels == POSITIVE).nonzero().squeeze(1)
        # Rows of a run of images: anchor j of any image is anchors[j % R].
        pos_anchors = anchors.index_select(0, pos % num_anchors)
        sums.append(box_loss(d.index_select(0, pos), boxes.index_select(0, pos), pos_anchors, box_coder))
    return sums


@torch.no_grad()
def per_anchor_cls_losses(logits: Tensor, gt_classes: Tensor, cls_loss) -> Tensor:
    """Class loss of every anchor, summed over its K classes: ``(N, R)``, without gradient.

    Args:
        logits: (N, R, K); gt_classes: (N, R) int64, ``K`` for not POSITIVE (as match_anchors gives);
        cls_loss: a module summing its loss over ``(M, K)`` logits and targets, made of batched tensor
            operations (it is mapped over rows with ``torch.func.vmap``, one row per call).
    """
    num_images, num_anchors, num_classes = logits.shape
    flat_logits = logits.detach().reshape(-1, num_classes)
    flat_classes = gt_classes.reshape(-1)
    per_row = torch.func.vmap(lambda x, t: cls_loss(x.unsqueeze(0), t.unsqueeze(0)))
    chunk = flat_logits.shape[0]
    if logits.device.type == "cpu":  # cache-sized pieces, as for the training loss
        chunk = _CPU_CHUNK_ELEMENTS // max(num_classes, 1)
    chunk = max(chunk, 1)
    try:
        losses = [
            per_row(x, _class_targets(c, num_classes, x.dtype))
            for x, c in zip(flat_logits.split(chunk), flat_classes.split(chunk))
        ]
    except RuntimeError as e:
        raise RuntimeError(
            f"The class loss {type(cls_loss).__name__} (MODEL.CLS_LOSS.NAME) could not be computed per "
            f"anchor with torch.func.vmap, as a sampler that needs losses (e.g. OHEMSampler) requires; "
            f"it must avoid control flow on tensor values. Cause: {e}"
        ) from e
    if not losses:
        return logits.new_zeros((num_images, num_anchors))
    return torch.cat(losses).reshape(num_images, num_anchors)


def _example_losses(
    logits: Tensor, deltas: Tensor, anchors: Tensor, box_coder, cls_loss, assignments: List[ImageAssignment]
) -> Iterator[Tuple[Tensor, Tensor]]:
    """Per image, what a sampler with ``needs_losses`` ranks by: each anchor's class loss (R,) summed
    over K (computed for the whole batch at once) and its predicted box (R, 4) xyxy (``deltas``
    decoded on ``anchors``), both without gradient.

    Args:
        logits: (N, R, K); deltas: (N, R, 4); anchors: (R, 4) xyxy; assignments: the batch's matches.
    """
    losses = per_anchor_cls_losses(logits, torch.stack([a.gt_classes for a in assignments]), cls_loss)
    for i in range(len(assignments)):
        with torch.no_grad():
            boxes = box_coder.decode(deltas[i].detach(), anchors)
        yield losses[i], boxes


def _sampled_rows(assignments: List[ImageAssignment], num_anchors: int) -> Tensor:
    """(S,) int64 rows of the flattened batch (image i, anchor j -> i * R + j) the sampler picked:
    each image's foreground picks, then its background picks."""
    rows = [torch.cat((a.positive_idx, a.negative_idx)) + i * num_anchors for i, a in enumerate(assignments)]
    return torch.cat(rows)


def _sampled_cls_loss(logits: Tensor, gt_classes: Tensor, rows: Tensor, cls_loss) -> Tensor:
    """``cls_loss`` over the sampled ``rows`` of the flattened batch, divided by their number (at least 1)."""
    num_classes = logits.shape[-1]
    x = logits.reshape(-1, num_classes).index_select(0, rows)
    classes = gt_classes.reshape(-1).index_select(0, rows)
    return cls_loss(x, _class_targets(classes, num_classes, x.dtype)) / max(rows.numel(), 1)


def dense_detection_losses(
    logits: Tensor,
    deltas: Tensor,
    anchors: Tensor,
    targets: List[Dict[str, Tensor]],
    matcher,
    box_coder,
    cls_loss,
    box_loss,
    normalize_per_image: bool,
    sampler: Optional[object] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Classification and box losses of a batch.

    Args:
        logits: (N, R, K); deltas: (N, R, 4); anchors: (R, 4) xyxy; targets: per image dicts.
        normalize_per_image: divide each image's losses by its foreground count (at least 1) and
            average over images (torchvision); otherwise return plain sums.
        sampler: None (the class loss covers every non-ignored anchor, treated as the box loss is),
            or a sampler (samplers/): the class loss is then the mean, over the anchors it samples in
            the whole batch, of their loss summed over K; it needs no further normalisation, whatever
            ``normalize_per_image``. The box loss does not depend on the sampler.

    Returns:
        loss_cls, loss_box (scalars) and the number of foreground anchors in the batch.
    """
    num_images, num_anchors, num_classes = logits.shape
    assignments = assign_targets(
        anchors, targets, matcher, sampler, num_classes=num_classes,
        example_losses=lambda assigned: _example_losses(logits, deltas, anchors, box_coder, cls_loss, assigned),
    )
    match_labels, gt_classes, matched_boxes = _stack(assignments)
    groups = num_images if normalize_per_image else 1
    if sampler is None:
        cls_sums = _cls_loss_sums(logits, match_labels, gt_classes, cls_loss, groups)
    else:
        loss_cls = _sampled_cls_loss(logits, gt_classes, _sampled_rows(assignments, num_anchors), cls_loss)
    box_sums = _box_loss_sums(deltas, anchors, match_labels, matched_boxes, box_coder, box_loss, groups)
    pos_per_image = (match_labels == POSITIVE).sum(dim=1)
    num_pos = pos_per_image.sum()
    if not normalize_per_image:
        if sampler is None:
            loss_cls = cls_sums[0]
        return loss_cls, box_sums[0], num_pos
    counts = pos_per_image.clamp(min=1)
    if sampler is None:
        loss_cls = sum(c / n for c, n in zip(cls_sums, counts)) / num_images
    loss_box = sum(b / n for b, n in zip(box_sums, counts)) / num_images
    return loss_cls, loss_box, num_pos

"""Detector inference: RetinaNet's per-level top-k, decode and class-aware NMS; detections of any
detector rescaled to the size each input requests."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ... import ops
from ...structures import clip_boxes, scale_boxes
from ...utils.tracing import at_most

__all__ = ["dense_detections", "drop_empty_boxes", "rescale_detections", "rescale_to_inputs"]


def _candidates_per_level(
    logits: Tensor, deltas: Tensor, anchors: Tensor, box_coder, score_thresh: float, topk: int
) -> Tuple[Tensor, Tensor, Tensor]:
    """Best ``topk`` (anchor, class) pairs of one level scoring above ``score_thresh``.

    Args:
        logits: (R, K); deltas: (R, 4); anchors: (R, 4) xyxy.
    Returns:
        boxes (k, 4) xyxy decoded, scores (k,), labels (k,) int64.
    """
    num_classes = logits.shape[-1]
    scores = logits.sigmoid().flatten()
    candidate_idxs = (scores > score_thresh).nonzero().squeeze(1)
    # By index, not by the boolean mask: masking would run a second nonzero over all R * K scores.
    scores = scores.index_select(0, candidate_idxs)
    num_topk = at_most(candidate_idxs.shape[0], topk)
    scores, order = scores.topk(num_topk)
    candidate_idxs = candidate_idxs[order]
    anchor_idxs = torch.div(candidate_idxs, num_classes, rounding_mode="floor")
    labels = candidate_idxs % num_classes
    boxes = box_coder.decode(deltas[anchor_idxs], anchors[anchor_idxs])
    return boxes, scores, labels


def dense_detections(
    logits_per_level: List[Tensor],
    deltas_per_level: List[Tensor],
    anchors_per_level: List[Tensor],
    image_size: Tuple[int, int],
    box_coder,
    score_thresh: float,
    topk_candidates: int,
    nms_thresh: float,
    max_detections: int,
    clip_before_nms: bool = True,
) -> Dict[str, Tensor]:
    """Detections of one image from its per-level head outputs.

    Args:
        logits_per_level: list of (Ri, K); deltas_per_level: list of (Ri, 4);
        anchors_per_level: list of (Ri, 4) xyxy; image_size: (h, w) the boxes are clipped to.
        clip_before_nms: clip the candidates before NMS (torchvision), or NMS the unclipped boxes and
            clip the kept ones (detectron2); near the border the two keep different boxes.

    Returns:
        {"boxes": (D, 4) xyxy, "scores": (D,), "labels": (D,) int64}, best score first.
    """
    boxes, scores, labels = [], [], []
    for logits, deltas, anchors in zip(logits_per_level, deltas_per_level, anchors_per_level):
        b, s, l = _candidates_per_level(logits, deltas, anchors, box_coder, score_thresh, topk_candidates)
        boxes.append(clip_boxes(b, image_size) if clip_before_nms else b)
        scores.append(s)
        labels.append(l)
    boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    keep = ops.batched_nms(boxes, scores, labels, nms_thresh)[:max_detections]
    kept = boxes[keep] if clip_before_nms else clip_boxes(boxes[keep], image_size)
    return {"boxes": kept, "scores": scores[keep], "labels": labels[keep]}


def rescale_detections(detections: Dict[str, Tensor], input_size: Tuple[int, int], output_size) -> Dict:
    """Scale ``detections["boxes"]`` from ``input_size`` (h, w) to ``output_size`` (height, width)."""
    height, width = output_size
    scale_y, scale_x = height / input_size[0], width / input_size[1]
    if scale_x == 1.0 and scale_y == 1.0:
        return detections
    out = dict(detections)
    out["boxes"] = clip_boxes(scale_boxes(detections["boxes"], scale_x, scale_y), (height, width))
    return out


def drop_empty_boxes(detections: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """``detections`` without the boxes of zero width or height (every entry filtered alike)."""
    boxes = detections["boxes"]
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return {key: value[keep] for key, value in detections.items()}


def rescale_to_inputs(
    detections: List[Dict[str, Tensor]], image_sizes: Sequence[Tuple[int, int]], batched_inputs: Optional[Sequence[Dict]],
    drop_empty: bool = False,
) -> List[Dict[str, Tensor]]:
    """Each image's detections ({"boxes" (D, 4) xyxy, ...} in its ``image_sizes[i]`` (h, w) frame),
    rescaled to ``batched_inputs[i]``'s "height" x "width" when it gives them (unchanged otherwise,
    or when ``batched_inputs`` is None); with ``drop_empty``, then without boxes of zero width or
    height (detectron2's detector_postprocess)."""
    results = []
    for i, (det, image_size) in enumerate(zip(detections, image_sizes)):
        item = batched_inputs[i] if batched_inputs is not None else {}
        if "height" in item and "width" in item:
            det = rescale_detections(det, image_size, (int(item["height"]), int(item["width"])))
        results.append(drop_empty_boxes(det) if drop_empty else det)
    return results

"""Autograd and fake-tensor (torch.compile) registrations of the compiled ops.

box_iou's gradient is computed by re-running the fallback's differentiable arithmetic, which has the
same forward values. The matching and NMS ops return indices and flags and are not differentiable.
"""
import torch

from . import fallback

__all__ = ["register"]


def _iou_setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _iou_backward(ctx, grad):
    boxes1, boxes2 = ctx.saved_tensors
    with torch.enable_grad():
        a = boxes1.detach().requires_grad_(ctx.needs_input_grad[0])
        b = boxes2.detach().requires_grad_(ctx.needs_input_grad[1])
        dtype = torch.float32 if a.dtype in (torch.float16, torch.bfloat16) else a.dtype
        iou = fallback.pairwise_iou(a.to(dtype), b.to(dtype)).to(a.dtype)
        wanted = [t for t in (a, b) if t.requires_grad]
        grads = iter(torch.autograd.grad(iou, wanted, grad))
    return tuple(next(grads) if t.requires_grad else None for t in (a, b))


def register() -> None:
    """Register the Python-side parts of ``torch.ops.retinadet.*`` (once the library is loaded)."""
    lib = "retinadet::"
    for op in ("box_iou", "batched_box_iou"):
        torch.library.register_autograd(lib + op, _iou_backward, setup_context=_iou_setup_context)

    @torch.library.register_fake(lib + "box_iou")
    def _(boxes1, boxes2):
        fallback.check_same_device("box_iou", boxes1=boxes1, boxes2=boxes2)
        return boxes1.new_empty((boxes1.shape[0], boxes2.shape[0]))

    @torch.library.register_fake(lib + "batched_box_iou")
    def _(boxes1, boxes2):
        fallback.check_same_device("batched_box_iou", boxes1=boxes1, boxes2=boxes2)
        return boxes1.new_empty((boxes1.shape[0], boxes1.shape[1], boxes2.shape[1]))

    @torch.library.register_fake(lib + "match_max_iou")
    def _(anchors, gt_boxes):
        fallback.check_same_device("match_max_iou", anchors=anchors, gt_boxes=gt_boxes)
        n, m = anchors.shape[0], gt_boxes.shape[0]
        return anchors.new_empty(n), anchors.new_empty(n, dtype=torch.int64), anchors.new_empty(m)

    @torch.library.register_fake(lib + "low_quality_matches")
    def _(anchors, gt_boxes, best_anchor_iou_per_gt):
        fallback.check_same_device("low_quality_matches", anchors=anchors, gt_boxes=gt_boxes,
                                   best_anchor_iou_per_gt=best_anchor_iou_per_gt)
        return anchors.new_empty(anchors.shape[0], dtype=torch.bool)

    def _kept_indices(boxes):
        kept = torch.library.get_ctx().new_dynamic_size()
        return boxes.new_empty(kept, dtype=torch.int64)

    @torch.library.register_fake(lib + "nms")
    def _(boxes, scores, iou_threshold):
        fallback.check_same_device("nms", boxes=boxes, scores=scores)
        return _kept_indices(boxes)

    @torch.library.register_fake(lib + "batched_nms")
    def _(boxes, scores, idxs, iou_threshold):
        fallback.check_same_device("batched_nms", boxes=boxes, scores=scores, idxs=idxs)
        return _kept_indices(boxes)

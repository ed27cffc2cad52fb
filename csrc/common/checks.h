// Argument checks shared by every op and backend. They raise ValueError in Python
// (TORCH_CHECK_VALUE) naming the argument, what was expected and what was given.
#pragma once

#include <ATen/ATen.h>

namespace retinadet {

// boxes must be a floating tensor of rank `rank` whose last dimension is 4, with finite values.
void check_boxes(const at::Tensor& boxes, const char* op, const char* name, int64_t rank);

// b must share a's dtype and device.
void check_same_dtype_device(const at::Tensor& a, const char* name_a, const at::Tensor& b,
                             const char* name_b, const char* op);

// NMS arguments: boxes (N, 4), scores (N,) without NaN on the same device, threshold in [0, 1].
void check_nms_args(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold,
                    const char* op);

// Per-op argument checks, shared by every backend of the op.
void check_box_iou_args(const at::Tensor& boxes1, const at::Tensor& boxes2);
void check_batched_box_iou_args(const at::Tensor& boxes1, const at::Tensor& boxes2);
void check_match_args(const at::Tensor& anchors, const at::Tensor& gt_boxes, const char* op);
void check_low_quality_args(const at::Tensor& anchors, const at::Tensor& gt_boxes,
                            const at::Tensor& best_anchor_iou_per_gt);
void check_batched_nms_args(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                            double iou_threshold);

// Float types the kernels compute in: float32 and float64 everywhere, float16/bfloat16 on CUDA.
void check_supported_dtype(const at::Tensor& t, const char* op, const char* name);

}  // namespace retinadet

#include "common/checks.h"

#include <cmath>

namespace retinadet {
namespace {

// Whether every value passes `ok`: a serial loop on the CPU (no temporaries; inputs are small
// next to the work that follows), a reduction on other devices.
template <typename Predicate>
bool cpu_all_of(const at::Tensor& t, Predicate ok) {
  const auto c = t.contiguous();
  bool result = true;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.scalar_type(), "all_of", [&] {
    const scalar_t* p = c.data_ptr<scalar_t>();
    for (int64_t i = 0, n = c.numel(); i < n; ++i) {
      if (!ok(static_cast<double>(p[i]))) {
        result = false;
        break;
      }
    }
  });
  return result;
}

bool all_finite(const at::Tensor& t) {
  if (t.is_cpu()) return cpu_all_of(t, [](double v) { return std::isfinite(v); });
  return at::isfinite(t).all().item<bool>();
}

bool any_nan(const at::Tensor& t) {
  if (t.is_cpu()) return !cpu_all_of(t, [](double v) { return !std::isnan(v); });
  return at::isnan(t).any().item<bool>();
}

}  // namespace

void check_boxes(const at::Tensor& boxes, const char* op, const char* name, int64_t rank) {
  const char* shape = rank == 2 ? "(N, 4)" : "(B, N, 4)";
  TORCH_CHECK_VALUE(boxes.dim() == rank && boxes.size(-1) == 4, op, ": ", name,
                    " must have shape ", shape, " xyxy; got ", boxes.sizes(), ".");
  TORCH_CHECK_VALUE(at::isFloatingType(boxes.scalar_type()), op, ": ", name,
                    " must be a floating tensor; got dtype ", boxes.scalar_type(), ".");
  check_supported_dtype(boxes, op, name);
  if (boxes.numel() > 0) {
    TORCH_CHECK_VALUE(all_finite(boxes), op, ": ", name,
                      " contains NaN or inf coordinates.");
  }
}

void check_same_dtype_device(const at::Tensor& a, const char* name_a, const at::Tensor& b,
                             const char* name_b, const char* op) {
  TORCH_CHECK_VALUE(a.scalar_type() == b.scalar_type() && a.device() == b.device(), op, ": ",
                    name_a, " and ", name_b, " must share dtype and device; got ",
                    a.scalar_type(), " on ", a.device(), " and ", b.scalar_type(), " on ",
                    b.device(), ".");
}

void check_supported_dtype(const at::Tensor& t, const char* op, const char* name) {
  const auto dtype = t.scalar_type();
  const bool full = dtype == at::kFloat || dtype == at::kDouble;
  const bool reduced = dtype == at::kHalf || dtype == at::kBFloat16;
  TORCH_CHECK_VALUE(full || (reduced && t.is_cuda()), op, ": ", name, " has dtype ", dtype,
                    " on ", t.device(),
                    "; supported: float32 and float64, plus float16 and bfloat16 on CUDA.");
}

void check_nms_args(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold,
                    const char* op) {
  check_boxes(boxes, op, "boxes", 2);
  TORCH_CHECK_VALUE(scores.dim() == 1 && scores.size(0) == boxes.size(0), op,
                    ": scores must have shape (", boxes.size(0), ",) to match boxes; got ",
                    scores.sizes(), ".");
  TORCH_CHECK_VALUE(scores.device() == boxes.device(), op, ": scores are on ", scores.device(),
                    " but boxes on ", boxes.device(), ".");
  TORCH_CHECK_VALUE(at::isFloatingType(scores.scalar_type()), op,
                    ": scores must be a floating tensor; got dtype ", scores.scalar_type(), ".");
  TORCH_CHECK_VALUE(iou_threshold >= 0.0 && iou_threshold <= 1.0, op,
                    ": iou_threshold must be in [0, 1]; got ", iou_threshold, ".");
  if (scores.numel() > 0) {
    TORCH_CHECK_VALUE(!any_nan(scores), op, ": scores contain NaN.");
  }
}

void check_box_iou_args(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  check_boxes(boxes1, "box_iou", "boxes1", 2);
  check_boxes(boxes2, "box_iou", "boxes2", 2);
  check_same_dtype_device(boxes1, "boxes1", boxes2, "boxes2", "box_iou");
}

void check_batched_box_iou_args(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  check_boxes(boxes1, "batched_box_iou", "boxes1", 3);
  check_boxes(boxes2, "batched_box_iou", "boxes2", 3);
  check_same_dtype_device(boxes1, "boxes1", boxes2, "boxes2", "batched_box_iou");
  TORCH_CHECK_VALUE(boxes1.size(0) == boxes2.size(0),
                    "batched_box_iou: boxes1 and boxes2 must have the same batch size; got ",
                    boxes1.size(0), " and ", boxes2.size(0), ".");
}

void check_match_args(const at::Tensor& anchors, const at::Tensor& gt_boxes, const char* op) {
  check_boxes(anchors, op, "anchors", 2);
  check_boxes(gt_boxes, op, "gt_boxes", 2);
  check_same_dtype_device(anchors, "anchors", gt_boxes, "gt_boxes", op);
  TORCH_CHECK_VALUE(gt_boxes.size(0) < (int64_t(1) << 31), op,
                    ": at most 2^31 - 1 gt boxes are supported; got ", gt_boxes.size(0), ".");
}

void check_low_quality_args(const at::Tensor& anchors, const at::Tensor& gt_boxes,
                            const at::Tensor& best_anchor_iou_per_gt) {
  check_match_args(anchors, gt_boxes, "low_quality_matches");
  check_same_dtype_device(anchors, "anchors", best_anchor_iou_per_gt, "best_anchor_iou_per_gt",
                          "low_quality_matches");
  TORCH_CHECK_VALUE(
      best_anchor_iou_per_gt.dim() == 1 && best_anchor_iou_per_gt.size(0) == gt_boxes.size(0),
      "low_quality_matches: best_anchor_iou_per_gt must have shape (", gt_boxes.size(0),
      ",) to match gt_boxes; got ", best_anchor_iou_per_gt.sizes(), ".");
}

void check_batched_nms_args(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                            double iou_threshold) {
  check_nms_args(boxes, scores, iou_threshold, "batched_nms");
  TORCH_CHECK_VALUE(idxs.dim() == 1 && idxs.size(0) == boxes.size(0),
                    "batched_nms: idxs must have shape (", boxes.size(0),
                    ",) to match boxes; got ", idxs.sizes(), ".");
  TORCH_CHECK_VALUE(!at::isFloatingType(idxs.scalar_type()) && idxs.scalar_type() != at::kBool,
                    "batched_nms: idxs must be an integer tensor of category ids; got dtype ",
                    idxs.scalar_type(), ".");
  TORCH_CHECK_VALUE(idxs.device() == boxes.device(), "batched_nms: idxs are on ", idxs.device(),
                    " but boxes on ", boxes.device(), ".");
}

}  // namespace retinadet

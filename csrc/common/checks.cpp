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

}  // namespace retinadet

// CPU kernels of retinadet::nms and retinadet::batched_nms. Scores are ordered with the same ATen
// sorts torchvision's nms and batched_nms use (stable for the processing order), so ties resolve
// identically; the suppression loop is vectorized.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/checks.h"
#include "nms/greedy_nms_cpu.h"

namespace retinadet {
namespace {

at::Tensor to_index_tensor(const std::vector<int64_t>& values) {
  auto out = at::empty({static_cast<int64_t>(values.size())}, at::kLong);
  std::copy(values.begin(), values.end(), out.data_ptr<int64_t>());
  return out;
}

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  check_nms_args(boxes, scores, iou_threshold, "nms");
  if (boxes.size(0) == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const auto order =
      std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true)).contiguous();
  const auto dets = boxes.contiguous();
  std::vector<int64_t> keep;
  AT_DISPATCH_FLOATING_TYPES(dets.scalar_type(), "nms_cpu", [&] {
    greedy_nms_cpu<scalar_t>(dets.data_ptr<scalar_t>(), order.data_ptr<int64_t>(), order.size(0),
                             iou_threshold, keep);
  });
  return to_index_tensor(keep);
}

void check_idxs(const at::Tensor& boxes, const at::Tensor& idxs) {
  TORCH_CHECK_VALUE(idxs.dim() == 1 && idxs.size(0) == boxes.size(0),
                    "batched_nms: idxs must have shape (", boxes.size(0),
                    ",) to match boxes; got ", idxs.sizes(), ".");
  TORCH_CHECK_VALUE(!at::isFloatingType(idxs.scalar_type()) && idxs.scalar_type() != at::kBool,
                    "batched_nms: idxs must be an integer tensor of category ids; got dtype ",
                    idxs.scalar_type(), ".");
  TORCH_CHECK_VALUE(idxs.device() == boxes.device(), "batched_nms: idxs are on ", idxs.device(),
                    " but boxes on ", boxes.device(), ".");
}

// NMS within each category, with torchvision's per-category results and ordering: each category's
// boxes (in index order) are sorted by their scores, and the boxes kept overall are sorted by score.
at::Tensor batched_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                           double iou_threshold) {
  check_nms_args(boxes, scores, iou_threshold, "batched_nms");
  check_idxs(boxes, idxs);
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));

  // Group box indices by category, index order kept inside each group.
  const auto by_category = std::get<1>(idxs.to(at::kLong).sort(/*stable=*/true, 0, false));
  const auto categories = idxs.to(at::kLong).index_select(0, by_category);
  const int64_t* cat = categories.data_ptr<int64_t>();
  std::vector<int64_t> group_start = {0};
  for (int64_t i = 1; i < n; ++i) {
    if (cat[i] != cat[i - 1]) group_start.push_back(i);
  }
  group_start.push_back(n);
  const int64_t num_groups = static_cast<int64_t>(group_start.size()) - 1;

  // Processing order of each group: its members sorted by score, as torchvision's nms would.
  auto order = at::empty({n}, at::kLong);
  int64_t* order_ptr = order.data_ptr<int64_t>();
  for (int64_t g = 0; g < num_groups; ++g) {
    const auto members = by_category.slice(0, group_start[g], group_start[g + 1]);
    const auto rank =
        std::get<1>(scores.index_select(0, members).sort(/*stable=*/true, 0, /*descending=*/true));
    const auto sorted = members.index_select(0, rank);
    std::copy_n(sorted.data_ptr<int64_t>(), sorted.size(0), order_ptr + group_start[g]);
  }

  const auto dets = boxes.contiguous();
  auto keep_mask = at::zeros({n}, at::kBool);
  bool* keep_flags = keep_mask.data_ptr<bool>();
  AT_DISPATCH_FLOATING_TYPES(dets.scalar_type(), "batched_nms_cpu", [&] {
    const scalar_t* box_ptr = dets.data_ptr<scalar_t>();
    at::parallel_for(0, num_groups, 1, [&](int64_t begin, int64_t end) {
      std::vector<int64_t> kept;
      for (int64_t g = begin; g < end; ++g) {
        kept.clear();
        greedy_nms_cpu<scalar_t>(box_ptr, order_ptr + group_start[g],
                                 group_start[g + 1] - group_start[g], iou_threshold, kept);
        for (int64_t id : kept) keep_flags[id] = true;
      }
    });
  });
  // torchvision orders the kept boxes with the default (unstable) sort; so do we, ties included.
  const auto kept = keep_mask.nonzero().squeeze(1);
  const auto rank = std::get<1>(scores.index_select(0, kept).sort(0, /*descending=*/true));
  return kept.index_select(0, rank);
}

}  // namespace

TORCH_LIBRARY_IMPL(retinadet, CPU, m) {
  m.impl("nms", &nms_cpu);
  m.impl("batched_nms", &batched_nms_cpu);
}

}  // namespace retinadet

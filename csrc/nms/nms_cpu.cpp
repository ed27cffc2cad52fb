// CPU kernels of retinadet::nms and retinadet::batched_nms. Scores are ordered with the same ATen
// sorts torchvision's nms and batched_nms use (stable for the processing order), so ties resolve
// identically; the suppression loop is vectorized.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

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

// Stable grouping of the indices 0..N-1 by category: a counting sort when the ids span a small
// range, else a stable comparison sort. group_start holds each group's first position, then N.
void group_by_category(const at::Tensor& categories, std::vector<int64_t>& by_category,
                       std::vector<int64_t>& group_start) {
  const int64_t n = categories.size(0);
  const int64_t* cat = categories.data_ptr<int64_t>();
  const auto [lo, hi] = std::minmax_element(cat, cat + n);
  by_category.resize(n);
  group_start.clear();
  const uint64_t span = static_cast<uint64_t>(*hi) - static_cast<uint64_t>(*lo);
  if (span <= static_cast<uint64_t>(4 * n + 1024)) {
    std::vector<int64_t> offset(span + 2, 0);
    for (int64_t i = 0; i < n; ++i) ++offset[cat[i] - *lo + 1];
    for (uint64_t c = 1; c < offset.size(); ++c) offset[c] += offset[c - 1];
    for (uint64_t c = 0; c + 1 < offset.size(); ++c) {
      if (offset[c + 1] > offset[c]) group_start.push_back(offset[c]);
    }
    for (int64_t i = 0; i < n; ++i) by_category[offset[cat[i] - *lo]++] = i;
  } else {
    for (int64_t i = 0; i < n; ++i) by_category[i] = i;
    std::stable_sort(by_category.begin(), by_category.end(),
                     [cat](int64_t i, int64_t j) { return cat[i] < cat[j]; });
    group_start.push_back(0);
    for (int64_t p = 1; p < n; ++p) {
      if (cat[by_category[p]] != cat[by_category[p - 1]]) group_start.push_back(p);
    }
  }
  group_start.push_back(n);
}

// NMS within each category, with torchvision's per-category results and ordering: each category's
// boxes (in index order) are sorted by their scores, and the boxes kept overall are sorted by score.
at::Tensor batched_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                           double iou_threshold) {
  check_batched_nms_args(boxes, scores, idxs, iou_threshold);
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));

  // Group box indices by category, index order kept inside each group.
  std::vector<int64_t> by_category;
  std::vector<int64_t> group_start;
  group_by_category(idxs.to(at::kLong).contiguous(), by_category, group_start);
  const int64_t num_groups = static_cast<int64_t>(group_start.size()) - 1;

  // Processing order of each group: its members sorted by decreasing score, ties by index; the
  // permutation torchvision's nms (a stable descending sort) gives on the group's boxes.
  std::vector<int64_t>& order = by_category;
  int64_t* order_ptr = order.data();
  const auto score_values = scores.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, score_values.scalar_type(),
                                  "batched_nms_order", [&] {
    const scalar_t* sc = score_values.data_ptr<scalar_t>();
    for (int64_t g = 0; g < num_groups; ++g) {
      std::stable_sort(order_ptr + group_start[g], order_ptr + group_start[g + 1],
                       [sc](int64_t i, int64_t j) { return sc[i] > sc[j]; });
    }
  });

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

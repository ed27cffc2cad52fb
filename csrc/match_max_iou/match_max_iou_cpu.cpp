// CPU kernels of retinadet::match_max_iou and retinadet::low_quality_matches. Anchors are taken in
// blocks of 64 consecutive rows (neighbours in an anchor grid); a gt box that does not overlap a
// block's bounding box has IoU 0 with all of its anchors and is skipped for the whole block. Memory
// is O(N + M): the outputs, one copy of the boxes and a per-thread (M,) buffer.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <mutex>

#include "common/checks.h"
#include "common/soa.h"

namespace retinadet {
namespace {

constexpr int64_t kBlock = 64;

// Bounding box of anchors [begin, end) of an SoA.
template <typename T>
struct Extent {
  T x1, y1, x2, y2;
};

template <typename T>
Extent<T> block_extent(const BoxSoA<T>& a, int64_t begin, int64_t end) {
  Extent<T> e{a.x1(begin), a.y1(begin), a.x2(begin), a.y2(begin)};
  for (int64_t k = begin + 1; k < end; ++k) {
    e.x1 = std::min(e.x1, a.x1(k));
    e.y1 = std::min(e.y1, a.y1(k));
    e.x2 = std::max(e.x2, a.x2(k));
    e.y2 = std::max(e.y2, a.y2(k));
  }
  return e;
}

// True when gt box g overlaps the extent with positive area; otherwise every anchor inside the
// extent has intersection 0 with g, hence IoU 0.
template <typename T>
inline bool overlaps(const BoxSoA<T>& gt, int64_t g, const Extent<T>& e) {
  return std::min(gt.x2(g), e.x2) - std::max(gt.x1(g), e.x1) > T(0) &&
         std::min(gt.y2(g), e.y2) - std::max(gt.y1(g), e.y1) > T(0);
}

template <typename T>
void match_max_iou_cpu_impl(const at::Tensor& anchors, const at::Tensor& gt_boxes, at::Tensor& max_iou,
                            at::Tensor& argmax, at::Tensor& best_per_gt) {
  const int64_t n = anchors.size(0), m = gt_boxes.size(0);
  const BoxSoA<T> a(anchors.data_ptr<T>(), n);
  const BoxSoA<T> gt(gt_boxes.data_ptr<T>(), m);
  T* max_out = max_iou.data_ptr<T>();
  int64_t* arg_out = argmax.data_ptr<int64_t>();
  T* best_out = best_per_gt.data_ptr<T>();
  std::mutex merge;
  const int64_t num_blocks = (n + kBlock - 1) / kBlock;
  at::parallel_for(0, num_blocks, 1, [&](int64_t block_begin, int64_t block_end) {
    std::vector<T> best_local(m, T(0));
    T best[kBlock];
    int32_t best_gt[kBlock];
    for (int64_t blk = block_begin; blk < block_end; ++blk) {
      const int64_t begin = blk * kBlock, count = std::min(kBlock, n - begin);
      const Extent<T> e = block_extent(a, begin, begin + count);
      std::fill_n(best, count, T(0));
      std::fill_n(best_gt, count, 0);
      for (int64_t g = 0; g < m; ++g) {
        if (!overlaps(gt, g, e)) continue;
        const T column_max = match_column(gt.x1(g), gt.y1(g), gt.x2(g), gt.y2(g), gt.area(g),
                                          a.from(begin), count, static_cast<int32_t>(g), best,
                                          best_gt);
        best_local[g] = std::max(best_local[g], column_max);
      }
      std::copy_n(best, count, max_out + begin);
      std::copy_n(best_gt, count, arg_out + begin);
    }
    std::lock_guard<std::mutex> lock(merge);
    for (int64_t g = 0; g < m; ++g) best_out[g] = std::max(best_out[g], best_local[g]);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> match_max_iou_cpu(const at::Tensor& anchors,
                                                                 const at::Tensor& gt_boxes) {
  check_match_args(anchors, gt_boxes, "match_max_iou");
  const auto a = anchors.contiguous();
  const auto g = gt_boxes.contiguous();
  auto max_iou = at::zeros({a.size(0)}, a.options());
  auto argmax = at::zeros({a.size(0)}, a.options().dtype(at::kLong));
  auto best_per_gt = at::zeros({g.size(0)}, a.options());
  if (a.size(0) == 0 || g.size(0) == 0) return {max_iou, argmax, best_per_gt};
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "match_max_iou_cpu", [&] {
    match_max_iou_cpu_impl<scalar_t>(a, g, max_iou, argmax, best_per_gt);
  });
  return {max_iou, argmax, best_per_gt};
}

template <typename T>
void low_quality_matches_cpu_impl(const at::Tensor& anchors, const at::Tensor& gt_boxes,
                                  const at::Tensor& best_per_gt, at::Tensor& flags) {
  const int64_t n = anchors.size(0), m = gt_boxes.size(0);
  const BoxSoA<T> a(anchors.data_ptr<T>(), n);
  const BoxSoA<T> gt(gt_boxes.data_ptr<T>(), m);
  const T* best = best_per_gt.data_ptr<T>();
  uint8_t* out = reinterpret_cast<uint8_t*>(flags.data_ptr<bool>());
  const int64_t num_blocks = (n + kBlock - 1) / kBlock;
  at::parallel_for(0, num_blocks, 1, [&](int64_t block_begin, int64_t block_end) {
    for (int64_t blk = block_begin; blk < block_end; ++blk) {
      const int64_t begin = blk * kBlock, count = std::min(kBlock, n - begin);
      const Extent<T> e = block_extent(a, begin, begin + count);
      for (int64_t g = 0; g < m; ++g) {
        // An IoU equal to a best IoU > 0 is > 0, so its gt overlaps the block.
        if (!(best[g] > T(0)) || !overlaps(gt, g, e)) continue;
        flag_equal_column(gt.x1(g), gt.y1(g), gt.x2(g), gt.y2(g), gt.area(g), a.from(begin), count,
                          best[g], out + begin);
      }
    }
  });
}

at::Tensor low_quality_matches_cpu(const at::Tensor& anchors, const at::Tensor& gt_boxes,
                                   const at::Tensor& best_per_gt) {
  check_low_quality_args(anchors, gt_boxes, best_per_gt);
  const auto a = anchors.contiguous();
  const auto g = gt_boxes.contiguous();
  const auto best = best_per_gt.contiguous();
  auto flags = at::zeros({a.size(0)}, a.options().dtype(at::kBool));
  if (a.size(0) == 0 || g.size(0) == 0) return flags;
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "low_quality_matches_cpu", [&] {
    low_quality_matches_cpu_impl<scalar_t>(a, g, best, flags);
  });
  return flags;
}

}  // namespace

TORCH_LIBRARY_IMPL(retinadet, CPU, m) {
  m.impl("match_max_iou", &match_max_iou_cpu);
  m.impl("low_quality_matches", &low_quality_matches_cpu);
}

}  // namespace retinadet

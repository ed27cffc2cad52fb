// CUDA kernels of retinadet::match_max_iou and retinadet::low_quality_matches: one thread per
// anchor, gt boxes streamed through shared memory in tiles. The per-gt maximum is a warp reduction
// followed by one atomic per warp and gt. Memory is O(N + M).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/box_math.h"
#include "common/checks.h"
#include "common/cuda_utils.cuh"

namespace retinadet {
namespace {

constexpr int kThreads = 256;  // anchors per block, and gt boxes per shared-memory tile

template <typename T>
struct GtTile {
  T x1[kThreads], y1[kThreads], x2[kThreads], y2[kThreads], area[kThreads];
};

template <typename scalar_t, typename T>
__device__ inline void load_tile(GtTile<T>& tile, const scalar_t* gt, int64_t tile_start, int64_t m) {
  const int64_t g = tile_start + threadIdx.x;
  if (g < m) {
    const T x1 = gt[4 * g], y1 = gt[4 * g + 1], x2 = gt[4 * g + 2], y2 = gt[4 * g + 3];
    tile.x1[threadIdx.x] = x1;
    tile.y1[threadIdx.x] = y1;
    tile.x2[threadIdx.x] = x2;
    tile.y2[threadIdx.x] = y2;
    tile.area[threadIdx.x] = box_area<T>(x1, y1, x2, y2);
  }
}

template <typename T>
struct AnchorBox {
  T x1, y1, x2, y2, area;
};

// Anchor k in the accumulation type; a zero box for the threads past the last anchor, which still
// take part in the block's shared-memory loads and warp reductions.
template <typename scalar_t, typename T>
__device__ inline AnchorBox<T> load_anchor(const scalar_t* anchors, int64_t k, bool active) {
  AnchorBox<T> a{T(0), T(0), T(0), T(0), T(0)};
  if (active) {
    a.x1 = anchors[4 * k]; a.y1 = anchors[4 * k + 1]; a.x2 = anchors[4 * k + 2]; a.y2 = anchors[4 * k + 3];
    a.area = box_area<T>(a.x1, a.y1, a.x2, a.y2);
  }
  return a;
}

template <typename scalar_t>
__global__ void match_max_iou_kernel(const scalar_t* __restrict__ anchors,
                                     const scalar_t* __restrict__ gt, int64_t n, int64_t m,
                                     scalar_t* __restrict__ max_iou, int64_t* __restrict__ argmax,
                                     acc_t<scalar_t>* __restrict__ best_per_gt) {
  using T = acc_t<scalar_t>;
  __shared__ GtTile<T> tile;
  const int64_t k = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
  const bool active = k < n;
  const AnchorBox<T> anchor = load_anchor<scalar_t, T>(anchors, k, active);
  T best = 0;
  int64_t best_gt = 0;
  for (int64_t start = 0; start < m; start += kThreads) {
    __syncthreads();
    load_tile<scalar_t, T>(tile, gt, start, m);
    __syncthreads();
    const int count = static_cast<int>(min_i64(kThreads, m - start));
    for (int t = 0; t < count; ++t) {
      T iou = box_pair_iou<T>(anchor.x1, anchor.y1, anchor.x2, anchor.y2, anchor.area, tile.x1[t],
                              tile.y1[t], tile.x2[t], tile.y2[t], tile.area[t]);
      if (!active) iou = 0;
      if (iou > best) {  // strict: ties keep the first gt, as torch.max does
        best = iou;
        best_gt = start + t;
      }
      if (__any_sync(0xffffffffu, iou > T(0))) {
        T v = iou;
        for (int offset = 16; offset > 0; offset >>= 1) {
          const T other = __shfl_xor_sync(0xffffffffu, v, offset);
          v = other > v ? other : v;
        }
        if ((threadIdx.x & 31) == 0 && v > T(0)) atomic_max_nonnegative(&best_per_gt[start + t], v);
      }
    }
  }
  if (active) {
    max_iou[k] = static_cast<scalar_t>(best);
    argmax[k] = best_gt;
  }
}

template <typename scalar_t>
__global__ void low_quality_matches_kernel(const scalar_t* __restrict__ anchors,
                                           const scalar_t* __restrict__ gt,
                                           const scalar_t* __restrict__ best_per_gt, int64_t n,
                                           int64_t m, bool* __restrict__ flags) {
  using T = acc_t<scalar_t>;
  __shared__ GtTile<T> tile;
  __shared__ scalar_t best[kThreads];
  const int64_t k = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
  const bool active = k < n;
  const AnchorBox<T> anchor = load_anchor<scalar_t, T>(anchors, k, active);
  bool flag = false;
  for (int64_t start = 0; start < m; start += kThreads) {
    __syncthreads();
    load_tile<scalar_t, T>(tile, gt, start, m);
    if (start + threadIdx.x < m) best[threadIdx.x] = best_per_gt[start + threadIdx.x];
    __syncthreads();
    const int count = static_cast<int>(min_i64(kThreads, m - start));
    for (int t = 0; t < count; ++t) {
      const T target = static_cast<T>(best[t]);
      if (!(target > T(0))) continue;
      const T iou = box_pair_iou<T>(anchor.x1, anchor.y1, anchor.x2, anchor.y2, anchor.area,
                                    tile.x1[t], tile.y1[t], tile.x2[t], tile.y2[t], tile.area[t]);
      // Compared in the output dtype, where best_anchor_iou_per_gt was rounded.
      flag |= static_cast<T>(static_cast<scalar_t>(iou)) == target;
    }
  }
  if (active) flags[k] = flag;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> match_max_iou_cuda(const at::Tensor& anchors,
                                                                  const at::Tensor& gt_boxes) {
  check_match_args(anchors, gt_boxes, "match_max_iou");
  c10::cuda::CUDAGuard guard(anchors.device());
  const auto a = anchors.contiguous();
  const auto g = gt_boxes.contiguous();
  const int64_t n = a.size(0), m = g.size(0);
  auto max_iou = at::zeros({n}, a.options());
  auto argmax = at::zeros({n}, a.options().dtype(at::kLong));
  const auto acc_dtype = a.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto best_acc = at::zeros({m}, a.options().dtype(acc_dtype));
  if (n > 0 && m > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "match_max_iou_cuda",
                                    [&] {
      match_max_iou_kernel<scalar_t><<<ceil_div(n, kThreads), kThreads, 0, stream>>>(
          a.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), n, m, max_iou.data_ptr<scalar_t>(),
          argmax.data_ptr<int64_t>(), best_acc.data_ptr<acc_t<scalar_t>>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {max_iou, argmax, best_acc.to(a.scalar_type())};
}

at::Tensor low_quality_matches_cuda(const at::Tensor& anchors, const at::Tensor& gt_boxes,
                                    const at::Tensor& best_per_gt) {
  check_low_quality_args(anchors, gt_boxes, best_per_gt);
  c10::cuda::CUDAGuard guard(anchors.device());
  const auto a = anchors.contiguous();
  const auto g = gt_boxes.contiguous();
  const auto best = best_per_gt.contiguous();
  const int64_t n = a.size(0), m = g.size(0);
  auto flags = at::zeros({n}, a.options().dtype(at::kBool));
  if (n > 0 && m > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(),
                                    "low_quality_matches_cuda", [&] {
      low_quality_matches_kernel<scalar_t><<<ceil_div(n, kThreads), kThreads, 0, stream>>>(
          a.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), best.data_ptr<scalar_t>(), n, m,
          flags.data_ptr<bool>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return flags;
}

}  // namespace

TORCH_LIBRARY_IMPL(retinadet, CUDA, m) {
  m.impl("match_max_iou", &match_max_iou_cuda);
  m.impl("low_quality_matches", &low_quality_matches_cuda);
}

}  // namespace retinadet

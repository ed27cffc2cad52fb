// CUDA kernels of retinadet::nms and retinadet::batched_nms. Boxes are sorted by score with the same
// ATen sort torchvision uses (stable); one kernel writes, for each box, a bit mask of the later boxes it
// suppresses (64 per word); a single-block kernel then walks the boxes in order on the device, so
// the mask never travels to the host. batched_nms sorts by category first and never sets a bit
// across categories, which is NMS within each category.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/box_math.h"
#include "common/checks.h"
#include "common/cuda_utils.cuh"

namespace retinadet {
namespace {

constexpr int kBoxesPerWord = 64;
constexpr int kGatherThreads = 256;
constexpr int64_t kMaxSharedWords = 48 * 1024 / 8;

// mask[i * words + c] bit b: box i suppresses box c * 64 + b (both in sorted order, i < that box).
template <typename scalar_t>
__global__ void nms_mask_kernel(const scalar_t* __restrict__ boxes, const int64_t* __restrict__ category,
                                int64_t n, float threshold, unsigned long long* __restrict__ mask) {
  using T = acc_t<scalar_t>;
  const int64_t row_block = blockIdx.y, col_block = blockIdx.x;
  if (row_block > col_block) return;
  const int64_t words = ceil_div(n, kBoxesPerWord);
  const int row_size = static_cast<int>(min_i64(n - row_block * kBoxesPerWord, kBoxesPerWord));
  const int col_size = static_cast<int>(min_i64(n - col_block * kBoxesPerWord, kBoxesPerWord));
  __shared__ T cx1[kBoxesPerWord], cy1[kBoxesPerWord], cx2[kBoxesPerWord], cy2[kBoxesPerWord],
      carea[kBoxesPerWord];
  __shared__ int64_t ccat[kBoxesPerWord];
  if (threadIdx.x < col_size) {
    const int64_t c = col_block * kBoxesPerWord + threadIdx.x;
    const T x1 = boxes[4 * c], y1 = boxes[4 * c + 1], x2 = boxes[4 * c + 2], y2 = boxes[4 * c + 3];
    cx1[threadIdx.x] = x1; cy1[threadIdx.x] = y1; cx2[threadIdx.x] = x2; cy2[threadIdx.x] = y2;
    carea[threadIdx.x] = box_area<T>(x1, y1, x2, y2);
    ccat[threadIdx.x] = category ? category[c] : 0;
  }
  __syncthreads();
  if (threadIdx.x >= row_size) return;
  const int64_t i = row_block * kBoxesPerWord + threadIdx.x;
  const T x1 = boxes[4 * i], y1 = boxes[4 * i + 1], x2 = boxes[4 * i + 2], y2 = boxes[4 * i + 3];
  const T area = box_area<T>(x1, y1, x2, y2);
  const int64_t cat = category ? category[i] : 0;
  unsigned long long bits = 0;
  const int start = row_block == col_block ? threadIdx.x + 1 : 0;
  for (int b = start; b < col_size; ++b) {
    const T iou = box_pair_iou<T>(x1, y1, x2, y2, area, cx1[b], cy1[b], cx2[b], cy2[b], carea[b]);
    // float threshold, as torchvision's CUDA kernel compares.
    if (ccat[b] == cat && iou > threshold) bits |= 1ULL << b;
  }
  mask[i * words + col_block] = bits;
}

// keep[i] = whether sorted box i survives, walking the boxes in order. One block: word w of the
// "removed" set is owned by the threads w % blockDim, so the updates never race.
__global__ void nms_gather_kernel(const unsigned long long* __restrict__ mask, int64_t n,
                                  unsigned long long* __restrict__ removed_global,
                                  bool* __restrict__ keep) {
  extern __shared__ unsigned long long removed_shared[];
  unsigned long long* removed = removed_global ? removed_global : removed_shared;
  const int64_t words = ceil_div(n, kBoxesPerWord);
  for (int64_t w = threadIdx.x; w < words; w += blockDim.x) removed[w] = 0;
  __syncthreads();
  for (int64_t w = 0; w < words; ++w) {
    unsigned long long current = removed[w];
    const int count = static_cast<int>(min_i64(n - w * kBoxesPerWord, kBoxesPerWord));
    for (int b = 0; b < count; ++b) {
      const int64_t i = w * kBoxesPerWord + b;
      const bool kept = !((current >> b) & 1ULL);
      if (threadIdx.x == 0) keep[i] = kept;
      if (kept) {
        const unsigned long long* row = mask + i * words;
        current |= row[w];
        for (int64_t v = w + 1 + threadIdx.x; v < words; v += blockDim.x) removed[v] |= row[v];
      }
    }
    __syncthreads();
  }
}

// Indices into the sorted boxes that survive NMS, in sorted order.
at::Tensor nms_sorted_cuda(const at::Tensor& sorted_boxes, const at::Tensor& sorted_category,
                           double iou_threshold) {
  const int64_t n = sorted_boxes.size(0);
  const int64_t words = ceil_div(n, kBoxesPerWord);
  auto mask = at::empty({n * words}, sorted_boxes.options().dtype(at::kLong));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t* category = sorted_category.defined() ? sorted_category.data_ptr<int64_t>() : nullptr;
  const dim3 grid(static_cast<unsigned>(words), static_cast<unsigned>(words));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, sorted_boxes.scalar_type(), "nms_cuda",
                                  [&] {
    nms_mask_kernel<scalar_t><<<grid, kBoxesPerWord, 0, stream>>>(
        sorted_boxes.data_ptr<scalar_t>(), category, n, static_cast<float>(iou_threshold),
        reinterpret_cast<unsigned long long*>(mask.data_ptr<int64_t>()));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  auto keep = at::empty({n}, sorted_boxes.options().dtype(at::kBool));
  at::Tensor removed;  // in global memory only when it does not fit in shared memory
  size_t shared_bytes = words * sizeof(unsigned long long);
  if (words > kMaxSharedWords) {
    removed = at::empty({words}, sorted_boxes.options().dtype(at::kLong));
    shared_bytes = 0;
  }
  nms_gather_kernel<<<1, kGatherThreads, shared_bytes, stream>>>(
      reinterpret_cast<const unsigned long long*>(mask.data_ptr<int64_t>()), n,
      removed.defined() ? reinterpret_cast<unsigned long long*>(removed.data_ptr<int64_t>()) : nullptr,
      keep.data_ptr<bool>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return keep.nonzero().squeeze(1);
}

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  check_nms_args(boxes, scores, iou_threshold, "nms");
  c10::cuda::CUDAGuard guard(boxes.device());
  if (boxes.size(0) == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const auto order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const auto sorted = boxes.index_select(0, order).contiguous();
  return order.index_select(0, nms_sorted_cuda(sorted, at::Tensor(), iou_threshold));
}

at::Tensor batched_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                            double iou_threshold) {
  check_batched_nms_args(boxes, scores, idxs, iou_threshold);
  c10::cuda::CUDAGuard guard(boxes.device());
  if (boxes.size(0) == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  // Score order (CUDA's sort is stable: ties by index), then grouped by category keeping it.
  const auto by_score = std::get<1>(scores.sort(/*stable=*/true, 0, /*descending=*/true));
  const auto category = idxs.to(at::kLong).index_select(0, by_score);
  const auto by_category = std::get<1>(category.sort(/*stable=*/true, 0, false));
  const auto order = by_score.index_select(0, by_category);
  const auto sorted = boxes.index_select(0, order).contiguous();
  const auto sorted_category = category.index_select(0, by_category).contiguous();
  const auto kept = order.index_select(0, nms_sorted_cuda(sorted, sorted_category, iou_threshold));
  // Kept boxes in index order, then by decreasing score with the default sort, as torchvision.
  const auto kept_by_index = std::get<0>(kept.sort());
  const auto rank = std::get<1>(scores.index_select(0, kept_by_index).sort(0, true));
  return kept_by_index.index_select(0, rank);
}

}  // namespace

TORCH_LIBRARY_IMPL(retinadet, CUDA, m) {
  m.impl("nms", &nms_cuda);
  m.impl("batched_nms", &batched_nms_cuda);
}

}  // namespace retinadet

// CUDA kernel of retinadet::batched_box_iou: one thread per output column, looping over rows, so
// each thread keeps its boxes2 box in registers and the writes are coalesced.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/box_math.h"
#include "common/checks.h"
#include "common/cuda_utils.cuh"

namespace retinadet {
namespace {

template <typename scalar_t>
__global__ void batched_box_iou_kernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                                       scalar_t* __restrict__ out, int64_t n, int64_t m,
                                       int64_t rows) {
  using T = acc_t<scalar_t>;
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= m) return;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const int64_t batch = row / n;
    const scalar_t* bb = b + 4 * (batch * m + j);
    const scalar_t* ab = a + 4 * row;
    const T bx1 = bb[0], by1 = bb[1], bx2 = bb[2], by2 = bb[3];
    const T ax1 = ab[0], ay1 = ab[1], ax2 = ab[2], ay2 = ab[3];
    const T iou = box_pair_iou<T>(ax1, ay1, ax2, ay2, box_area<T>(ax1, ay1, ax2, ay2), bx1, by1,
                                  bx2, by2, box_area<T>(bx1, by1, bx2, by2));
    out[row * m + j] = static_cast<scalar_t>(iou);
  }
}

// (B, N, 4) x (B, M, 4) -> (B, N, M), arguments already checked.
at::Tensor batched_iou_cuda(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  c10::cuda::CUDAGuard guard(boxes1.device());
  const auto a = boxes1.contiguous();
  const auto b = boxes2.contiguous();
  auto out = at::empty({a.size(0), a.size(1), b.size(1)}, a.options());
  if (out.numel() == 0) return out;
  const int64_t rows = a.size(0) * a.size(1), m = b.size(1);
  const int threads = 256;
  const dim3 grid(static_cast<unsigned>(ceil_div(m, threads)),
                  static_cast<unsigned>(std::min<int64_t>(rows, 65535)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "batched_box_iou_cuda",
                                  [&] {
    batched_box_iou_kernel<scalar_t><<<grid, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), a.size(1), m,
        rows);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor batched_box_iou_cuda(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  check_batched_box_iou_args(boxes1, boxes2);
  return batched_iou_cuda(boxes1, boxes2);
}

at::Tensor box_iou_cuda(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  check_box_iou_args(boxes1, boxes2);
  return batched_iou_cuda(boxes1.unsqueeze(0), boxes2.unsqueeze(0)).squeeze(0);
}

}  // namespace

TORCH_LIBRARY_IMPL(retinadet, CUDA, m) {
  m.impl("box_iou", &box_iou_cuda);
  m.impl("batched_box_iou", &batched_box_iou_cuda);
}

}  // namespace retinadet

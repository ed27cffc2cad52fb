// Helpers shared by the CUDA kernels.
#pragma once

#include <ATen/AccumulateType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

namespace retinadet {

// Kernels compute in float for float16/bfloat16/float32 inputs and in double for float64.
template <typename scalar_t>
using acc_t = at::acc_type<scalar_t, /*is_cuda=*/true>;

C10_HOST_DEVICE inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

C10_HOST_DEVICE inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

// Atomic max of a non-negative floating value: for x >= 0 the IEEE bit patterns order like the
// values, so an integer atomicMax on the bits is a float max.
__device__ inline void atomic_max_nonnegative(float* address, float value) {
  atomicMax(reinterpret_cast<unsigned int*>(address), __float_as_uint(value));
}

__device__ inline void atomic_max_nonnegative(double* address, double value) {
  atomicMax(reinterpret_cast<unsigned long long*>(address),
            static_cast<unsigned long long>(__double_as_longlong(value)));
}

}  // namespace retinadet

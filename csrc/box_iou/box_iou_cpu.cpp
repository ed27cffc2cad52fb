// CPU kernel of retinadet::batched_box_iou: one vectorized row of IoUs per (image, box of boxes1),
// rows split across threads; nothing is allocated beyond the (B, N, M) output.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/soa.h"

namespace retinadet {
namespace {

template <typename T>
void batched_box_iou_cpu_impl(const at::Tensor& boxes1, const at::Tensor& boxes2, at::Tensor& out) {
  const int64_t batch = boxes1.size(0), n = boxes1.size(1), m = boxes2.size(1);
  const T* a = boxes1.data_ptr<T>();
  const T* b = boxes2.data_ptr<T>();
  T* o = out.data_ptr<T>();
  std::vector<BoxSoA<T>> columns(batch);
  for (int64_t i = 0; i < batch; ++i) columns[i].assign(b + 4 * m * i, m);
  // About 16k IoUs per task: enough work to amortize a thread hand-off.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(m, 1));
  at::parallel_for(0, batch * n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const T* box = a + 4 * row;
      const T area = box_area<T>(box[0], box[1], box[2], box[3]);
      iou_row(box[0], box[1], box[2], box[3], area, columns[row / n].from(0), m, o + row * m);
    }
  });
}

// (B, N, 4) x (B, M, 4) -> (B, N, M), arguments already checked.
at::Tensor batched_iou_cpu(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  auto a = boxes1.contiguous();
  auto b = boxes2.contiguous();
  auto out = at::empty({a.size(0), a.size(1), b.size(1)}, a.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "batched_box_iou_cpu",
                             [&] { batched_box_iou_cpu_impl<scalar_t>(a, b, out); });
  return out;
}

at::Tensor batched_box_iou_cpu(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  check_batched_box_iou_args(boxes1, boxes2);
  return batched_iou_cpu(boxes1, boxes2);
}

at::Tensor box_iou_cpu(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  check_box_iou_args(boxes1, boxes2);
  return batched_iou_cpu(boxes1.unsqueeze(0), boxes2.unsqueeze(0)).squeeze(0);
}

}  // namespace

TORCH_LIBRARY_IMPL(retinadet, CPU, m) {
  m.impl("box_iou", &box_iou_cpu);
  m.impl("batched_box_iou", &batched_box_iou_cpu);
}

}  // namespace retinadet

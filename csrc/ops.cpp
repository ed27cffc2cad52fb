// The one place the retinadet op schemas are declared. Each backend registers its kernels with
// TORCH_LIBRARY_IMPL(retinadet, <CPU|CUDA>, m) in csrc/<op>/, so torch.ops.retinadet.<op> dispatches
// on the inputs' device without any hand-written switch. csrc/README.md says how to add an op.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(retinadet, m) {
  // IoU of every box of boxes1 (N, 4) with every box of boxes2 (M, 4), xyxy -> (N, M).
  m.def("box_iou(Tensor boxes1, Tensor boxes2) -> Tensor");
  // Per-image IoU of boxes1 (B, N, 4) with boxes2 (B, M, 4), xyxy -> (B, N, M).
  m.def("batched_box_iou(Tensor boxes1, Tensor boxes2) -> Tensor");
  // Per anchor (N, 4) the highest IoU over gt_boxes (M, 4) and its first index, and per gt box the
  // highest IoU over anchors: (max_iou (N,), argmax (N,) int64, best_anchor_iou_per_gt (M,)).
  m.def("match_max_iou(Tensor anchors, Tensor gt_boxes) -> (Tensor, Tensor, Tensor)");
  // (N,) bool: anchors whose IoU with some gt box equals that gt's best_anchor_iou_per_gt (> 0).
  m.def("low_quality_matches(Tensor anchors, Tensor gt_boxes, Tensor best_anchor_iou_per_gt) -> Tensor");
  // Greedy NMS of boxes (N, 4) by scores (N,): kept indices (int64) in decreasing score order.
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  // NMS within each category of idxs (N,): kept indices (int64) in decreasing score order.
  m.def("batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold) -> Tensor");
}

// Importing retinadet._C loads this library, which runs the registrations above.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

// Box arithmetic shared by the CPU and CUDA kernels: one definition of IoU, so every op (and every
// backend) rounds identically. Boxes are xyxy. Compile without FMA contraction (setup.py passes
// -ffp-contract=off / --fmad=false) so the result equals torchvision's element-wise arithmetic.
#pragma once

#include <c10/macros/Macros.h>

namespace retinadet {

// IoU of a = (ax1, ay1, ax2, ay2) with area_a and b likewise, in the accumulation type T.
// The arithmetic order is torchvision's box_iou: inter = w * h, union = (area_a + area_b) - inter.
// A union <= 0 (two zero-area boxes, or inverted boxes) gives 0 instead of 0 / 0 = NaN.
template <typename T>
C10_HOST_DEVICE inline T box_pair_iou(T ax1, T ay1, T ax2, T ay2, T area_a,
                                      T bx1, T by1, T bx2, T by2, T area_b) {
  const T w = (ax2 < bx2 ? ax2 : bx2) - (ax1 > bx1 ? ax1 : bx1);
  const T h = (ay2 < by2 ? ay2 : by2) - (ay1 > by1 ? ay1 : by1);
  const T inter = (w > T(0) ? w : T(0)) * (h > T(0) ? h : T(0));
  const T uni = area_a + area_b - inter;
  // Dividing by a safe denominator first keeps the loop branch-free, so it vectorizes.
  const T quotient = inter / (uni > T(0) ? uni : T(1));
  return uni > T(0) ? quotient : T(0);
}

// Area of an xyxy box, (x2 - x1) * (y2 - y1); inverted boxes give a negative area, as in torchvision.
template <typename T>
C10_HOST_DEVICE inline T box_area(T x1, T y1, T x2, T y2) {
  return (x2 - x1) * (y2 - y1);
}

}  // namespace retinadet

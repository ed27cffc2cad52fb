#include "common/cpu_kernels.h"

namespace retinadet {
namespace {

template <typename T>
inline void iou_row_impl(T ax1, T ay1, T ax2, T ay2, T area_a, BoxArrays<T> b, int64_t m,
                         T* __restrict__ out) {
  const T* __restrict__ x1 = b.x1;
  const T* __restrict__ y1 = b.y1;
  const T* __restrict__ x2 = b.x2;
  const T* __restrict__ y2 = b.y2;
  const T* __restrict__ area = b.area;
  for (int64_t j = 0; j < m; ++j) {
    out[j] = box_pair_iou<T>(ax1, ay1, ax2, ay2, area_a, x1[j], y1[j], x2[j], y2[j], area[j]);
  }
}

template <typename T>
inline int64_t suppress_row_impl(T ax1, T ay1, T ax2, T ay2, T area_a, BoxArrays<T> b, int64_t m,
                                 double threshold, uint8_t* __restrict__ alive) {
  const T* __restrict__ x1 = b.x1;
  const T* __restrict__ y1 = b.y1;
  const T* __restrict__ x2 = b.x2;
  const T* __restrict__ y2 = b.y2;
  const T* __restrict__ area = b.area;
  int64_t cleared = 0;
  for (int64_t j = 0; j < m; ++j) {
    const T iou = box_pair_iou<T>(ax1, ay1, ax2, ay2, area_a, x1[j], y1[j], x2[j], y2[j], area[j]);
    const uint8_t hit = static_cast<double>(iou) > threshold ? 1 : 0;
    cleared += alive[j] & hit;
    alive[j] = alive[j] & (hit ^ 1);
  }
  return cleared;
}

template <typename T>
inline T match_column_impl(T gx1, T gy1, T gx2, T gy2, T garea, BoxArrays<T> a, int64_t n,
                           int32_t gt_index, T* __restrict__ best, int32_t* __restrict__ best_gt) {
  const T* __restrict__ x1 = a.x1;
  const T* __restrict__ y1 = a.y1;
  const T* __restrict__ x2 = a.x2;
  const T* __restrict__ y2 = a.y2;
  const T* __restrict__ area = a.area;
  T column_max = T(0);
  // IoUs are finite and >= 0, so the max may be taken in any order (needs -fopenmp-simd).
#pragma omp simd reduction(max : column_max)
  for (int64_t k = 0; k < n; ++k) {
    const T iou = box_pair_iou<T>(x1[k], y1[k], x2[k], y2[k], area[k], gx1, gy1, gx2, gy2, garea);
    const T old = best[k];
    const int32_t old_gt = best_gt[k];
    const bool better = iou > old;
    best[k] = better ? iou : old;
    best_gt[k] = better ? gt_index : old_gt;
    column_max = column_max < iou ? iou : column_max;
  }
  return column_max;
}

template <typename T>
inline void flag_equal_column_impl(T gx1, T gy1, T gx2, T gy2, T garea, BoxArrays<T> a, int64_t n,
                                   T target, uint8_t* __restrict__ flags) {
  const T* __restrict__ x1 = a.x1;
  const T* __restrict__ y1 = a.y1;
  const T* __restrict__ x2 = a.x2;
  const T* __restrict__ y2 = a.y2;
  const T* __restrict__ area = a.area;
  for (int64_t k = 0; k < n; ++k) {
    const T iou = box_pair_iou<T>(x1[k], y1[k], x2[k], y2[k], area[k], gx1, gy1, gx2, gy2, garea);
    flags[k] |= iou == target ? 1 : 0;
  }
}

}  // namespace

RETINADET_MULTIVERSION
float match_column(float gx1, float gy1, float gx2, float gy2, float garea, BoxArrays<float> anchors,
                   int64_t n, int32_t gt_index, float* best, int32_t* best_gt) {
  return match_column_impl<float>(gx1, gy1, gx2, gy2, garea, anchors, n, gt_index, best, best_gt);
}

RETINADET_MULTIVERSION
double match_column(double gx1, double gy1, double gx2, double gy2, double garea,
                    BoxArrays<double> anchors, int64_t n, int32_t gt_index, double* best,
                    int32_t* best_gt) {
  return match_column_impl<double>(gx1, gy1, gx2, gy2, garea, anchors, n, gt_index, best, best_gt);
}

RETINADET_MULTIVERSION
void flag_equal_column(float gx1, float gy1, float gx2, float gy2, float garea,
                       BoxArrays<float> anchors, int64_t n, float target, uint8_t* flags) {
  flag_equal_column_impl<float>(gx1, gy1, gx2, gy2, garea, anchors, n, target, flags);
}

RETINADET_MULTIVERSION
void flag_equal_column(double gx1, double gy1, double gx2, double gy2, double garea,
                       BoxArrays<double> anchors, int64_t n, double target, uint8_t* flags) {
  flag_equal_column_impl<double>(gx1, gy1, gx2, gy2, garea, anchors, n, target, flags);
}

RETINADET_MULTIVERSION
void iou_row(float ax1, float ay1, float ax2, float ay2, float area_a, BoxArrays<float> b,
             int64_t m, float* out) {
  iou_row_impl<float>(ax1, ay1, ax2, ay2, area_a, b, m, out);
}

RETINADET_MULTIVERSION
void iou_row(double ax1, double ay1, double ax2, double ay2, double area_a, BoxArrays<double> b,
             int64_t m, double* out) {
  iou_row_impl<double>(ax1, ay1, ax2, ay2, area_a, b, m, out);
}

RETINADET_MULTIVERSION
int64_t suppress_row(float ax1, float ay1, float ax2, float ay2, float area_a, BoxArrays<float> b,
                     int64_t m, double threshold, uint8_t* alive) {
  return suppress_row_impl<float>(ax1, ay1, ax2, ay2, area_a, b, m, threshold, alive);
}

RETINADET_MULTIVERSION
int64_t suppress_row(double ax1, double ay1, double ax2, double ay2, double area_a,
                     BoxArrays<double> b, int64_t m, double threshold, uint8_t* alive) {
  return suppress_row_impl<double>(ax1, ay1, ax2, ay2, area_a, b, m, threshold, alive);
}

}  // namespace retinadet

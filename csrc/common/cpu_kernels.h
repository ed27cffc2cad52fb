// Inner loops of the CPU kernels, over structure-of-arrays box coordinates so the compiler
// vectorizes them. Each is compiled for AVX2 and for the baseline ISA and picked at load time
// (GCC/Clang function multiversioning), so one build runs on any x86-64 machine.
#pragma once

#include <cstdint>

#include "common/box_math.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RETINADET_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define RETINADET_MULTIVERSION
#endif

namespace retinadet {

// Boxes as five contiguous arrays (x1, y1, x2, y2, area) in the accumulation type.
template <typename T>
struct BoxArrays {
  const T* x1;
  const T* y1;
  const T* x2;
  const T* y2;
  const T* area;
};

// out[j] = IoU(box, b[j]) for j in [0, m).
void iou_row(float ax1, float ay1, float ax2, float ay2, float area_a, BoxArrays<float> b,
             int64_t m, float* out);
void iou_row(double ax1, double ay1, double ax2, double ay2, double area_a, BoxArrays<double> b,
             int64_t m, double* out);

// alive[j] &= !(IoU(box, b[j]) > threshold) for j in [0, m); returns how many were cleared.
// The comparison is made in double, as torchvision's CPU NMS does.
int64_t suppress_row(float ax1, float ay1, float ax2, float ay2, float area_a, BoxArrays<float> b,
                     int64_t m, double threshold, uint8_t* alive);
int64_t suppress_row(double ax1, double ay1, double ax2, double ay2, double area_a,
                     BoxArrays<double> b, int64_t m, double threshold, uint8_t* alive);

// One gt box against a block of n anchors: where IoU(gt, anchor k) > best[k], best[k] = IoU and
// best_gt[k] = gt_index (so ties keep the first gt). Returns the block's highest IoU with the gt.
float match_column(float gx1, float gy1, float gx2, float gy2, float garea, BoxArrays<float> anchors,
                   int64_t n, int32_t gt_index, float* best, int32_t* best_gt);
double match_column(double gx1, double gy1, double gx2, double gy2, double garea,
                    BoxArrays<double> anchors, int64_t n, int32_t gt_index, double* best,
                    int32_t* best_gt);

// flags[k] |= (IoU(gt, anchor k) == target) for a block of n anchors.
void flag_equal_column(float gx1, float gy1, float gx2, float gy2, float garea,
                       BoxArrays<float> anchors, int64_t n, float target, uint8_t* flags);
void flag_equal_column(double gx1, double gy1, double gx2, double gy2, double garea,
                       BoxArrays<double> anchors, int64_t n, double target, uint8_t* flags);

}  // namespace retinadet

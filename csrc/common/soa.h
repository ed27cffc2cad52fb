// Copies (N, 4) xyxy boxes into structure-of-arrays form (x1, y1, x2, y2, area) for the CPU loops.
#pragma once

#include <vector>

#include "common/box_math.h"
#include "common/cpu_kernels.h"

namespace retinadet {

template <typename T>
class BoxSoA {
 public:
  BoxSoA() = default;

  // boxes points at n rows of 4 coordinates; rows are taken in the order of `order` when given.
  template <typename S>
  BoxSoA(const S* boxes, int64_t n, const int64_t* order = nullptr) { assign(boxes, n, order); }

  template <typename S>
  void assign(const S* boxes, int64_t n, const int64_t* order = nullptr) {
    x1_.resize(n); y1_.resize(n); x2_.resize(n); y2_.resize(n); area_.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      const S* b = boxes + 4 * (order ? order[i] : i);
      x1_[i] = static_cast<T>(b[0]);
      y1_[i] = static_cast<T>(b[1]);
      x2_[i] = static_cast<T>(b[2]);
      y2_[i] = static_cast<T>(b[3]);
      area_[i] = box_area<T>(x1_[i], y1_[i], x2_[i], y2_[i]);
    }
  }

  int64_t size() const { return static_cast<int64_t>(x1_.size()); }

  // The arrays from position `start` on.
  BoxArrays<T> from(int64_t start) const {
    return {x1_.data() + start, y1_.data() + start, x2_.data() + start, y2_.data() + start,
            area_.data() + start};
  }

  T x1(int64_t i) const { return x1_[i]; }
  T y1(int64_t i) const { return y1_[i]; }
  T x2(int64_t i) const { return x2_[i]; }
  T y2(int64_t i) const { return y2_[i]; }
  T area(int64_t i) const { return area_[i]; }

  // Keeps the rows whose flag is set, in order, moving them to the front; returns how many.
  int64_t compact(int64_t start, const uint8_t* keep, int64_t* ids) {
    int64_t w = start;
    for (int64_t r = start; r < size(); ++r) {
      if (keep[r - start]) {
        x1_[w] = x1_[r]; y1_[w] = y1_[r]; x2_[w] = x2_[r]; y2_[w] = y2_[r];
        area_[w] = area_[r]; ids[w] = ids[r];
        ++w;
      }
    }
    resize(w);
    return w;
  }

 private:
  void resize(int64_t n) {
    x1_.resize(n); y1_.resize(n); x2_.resize(n); y2_.resize(n); area_.resize(n);
  }

  std::vector<T> x1_, y1_, x2_, y2_, area_;
};

}  // namespace retinadet

// Greedy NMS over boxes already in processing order, shared by nms and batched_nms on the CPU.
#pragma once

#include <vector>

#include "common/soa.h"

namespace retinadet {

// boxes: (N, 4) xyxy rows; order: the n rows to process, highest score first. Appends to `keep`
// the kept row ids in processing order. A box is dropped when its IoU with an earlier kept box,
// compared in double, is > threshold (torchvision's CPU rule). The candidates left after each
// kept box are scanned with one vectorized pass and compacted once half of them are gone.
template <typename T>
void greedy_nms_cpu(const T* boxes, const int64_t* order, int64_t n, double threshold,
                    std::vector<int64_t>& keep) {
  if (n == 0) return;
  BoxSoA<T> soa(boxes, n, order);
  std::vector<int64_t> ids(order, order + n);
  std::vector<uint8_t> alive(n, 1);
  int64_t size = n;
  int64_t pos = 0;
  int64_t alive_after = n - 1;  // alive candidates in (pos, size)
  while (pos < size) {
    keep.push_back(ids[pos]);
    const int64_t rest = size - pos - 1;
    if (rest == 0) break;
    alive_after -= suppress_row(soa.x1(pos), soa.y1(pos), soa.x2(pos), soa.y2(pos), soa.area(pos),
                                soa.from(pos + 1), rest, threshold, alive.data() + pos + 1);
    if (alive_after == 0) break;
    if (rest >= 256 && 2 * alive_after < rest) {
      size = soa.compact(pos + 1, alive.data() + pos + 1, ids.data());
      std::fill(alive.begin() + pos + 1, alive.begin() + size, uint8_t(1));
    }
    ++pos;
    while (!alive[pos]) ++pos;  // alive_after > 0 guarantees one is found before size
    --alive_after;
  }
}

}  // namespace retinadet

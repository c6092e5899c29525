#include "core/error.h"
#include "formats/quantized.h"

namespace lowbit {

void check_quantized_weight(const QuantizedWeight& w, std::string_view what) {
  if (w.bits < 2 || w.bits > 8) fail("{}: unsupported bit width {} (expected 2..8)", what, w.bits);
  if (w.rows <= 0 || w.cols <= 0) fail("{}: bad shape ({}, {})", what, w.rows, w.cols);
  if (w.group_size <= 0 || w.cols % w.group_size != 0)
    fail("{}: group size {} does not divide the {} input columns", what, w.group_size, w.cols);
  if (!w.codes || !w.scales || !w.zeros) fail("{}: missing codes, scales or zero-points", what);
  if (w.g_idx) {
    const int64_t G = w.n_groups();
    for (int64_t c = 0; c < w.cols; ++c)
      if (w.g_idx[c] < 0 || w.g_idx[c] >= G)
        fail("{}: g_idx[{}] = {} is outside [0, {})", what, c, w.g_idx[c], G);
  }
}

}  // namespace lowbit

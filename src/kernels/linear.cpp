#include "kernels/linear.h"

#include <vector>

namespace lowbit {

Linear owned_f32_linear(std::vector<float> values, int64_t rows, int64_t cols) {
  auto buf = std::make_shared<std::vector<float>>(std::move(values));
  Linear l;
  l.dense = DenseWeight{DType::F32, buf->data(), rows, cols};
  l.owner = buf;
  return l;
}

std::vector<float> linear_to_f32(const Linear& w) {
  std::vector<float> out(size_t(w.rows() * w.cols()));
  if (w.quant)
    dequantize_rows(*w.quant, 0, w.rows(), out.data());
  else
    widen_to_f32(w.dense.dtype, w.dense.data, out.data(), out.size());
  return out;
}

}  // namespace lowbit

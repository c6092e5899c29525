#include "kernels/linear.h"

#include <vector>

#include "kernels/format_kernels.h"

namespace lowbit {

Linear packed_linear(std::shared_ptr<const PackedWeight> w) {
  Linear l;
  l.packed = std::move(w);
  return l;
}

Linear owned_f32_linear(std::vector<float> values, int64_t rows, int64_t cols) {
  auto buf = std::make_shared<std::vector<float>>(std::move(values));
  Linear l;
  l.dense = DenseWeight{DType::F32, buf->data(), rows, cols};
  l.owner = buf;
  return l;
}

std::vector<float> linear_to_f32(const Linear& w) {
  std::vector<float> out(size_t(w.rows() * w.cols()));
  if (w.packed)
    format_kernels(w.packed->format()).dequantize_rows(*w.packed, 0, w.rows(), out.data());
  else
    widen_to_f32(w.dense.dtype, w.dense.data, out.data(), out.size());
  return out;
}

}  // namespace lowbit

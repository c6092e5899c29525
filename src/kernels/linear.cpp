#include "kernels/linear.h"

#include <vector>

#include "core/dtype.h"
#include "kernels/format_kernels.h"

namespace lowbit {

std::string Linear::format_name() const {
  return packed ? packed->format().name : std::string(dtype_name(dense.dtype));
}

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

void linear_rows_f32(const Linear& w, int64_t r0, int64_t nr, float* out) {
  if (w.packed) {
    format_kernels(w.packed->format()).dequantize_rows(*w.packed, r0, nr, out);
  } else {
    const size_t es = dtype_size(w.dense.dtype);
    widen_to_f32(w.dense.dtype, static_cast<const uint8_t*>(w.dense.data) + size_t(r0 * w.dense.cols) * es,
                 out, size_t(nr * w.dense.cols));
  }
}

std::vector<float> linear_to_f32(const Linear& w) {
  std::vector<float> out(size_t(w.rows() * w.cols()));
  linear_rows_f32(w, 0, w.rows(), out.data());
  return out;
}

}  // namespace lowbit

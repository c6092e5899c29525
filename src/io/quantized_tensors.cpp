#include "io/quantized_tensors.h"

#include "core/error.h"

namespace lowbit {

bool has_quantized_linear(const Checkpoint& ckpt, const std::string& prefix) {
  return ckpt.has(prefix + ".qcodes");
}

std::shared_ptr<QuantizedWeight> quantized_linear_view(const Checkpoint& ckpt, const std::string& prefix,
                                                       int64_t rows, int64_t cols) {
  const TensorView& codes = ckpt.get(prefix + ".qcodes");
  const TensorView& scales = ckpt.get(prefix + ".scales");
  const TensorView& zeros = ckpt.get(prefix + ".qzeros");
  const std::string& src = codes.source.empty() ? ckpt.path : codes.source;
  auto expect = [&](const TensorView& t, const char* what, DType dt, std::vector<int64_t> shape) {
    if (t.dtype != dt || t.shape != shape)
      fail("{}: {}.{} is {} {}, expected {} {}", src, prefix, what, dtype_name(t.dtype), shape_str(t.shape),
           dtype_name(dt), shape_str(shape));
  };
  if (codes.shape.size() != 2 || scales.shape.size() != 2)
    fail("{}: {}.qcodes/.scales must be 2-D", src, prefix);
  const int64_t rb = codes.shape[1], G = scales.shape[1];
  auto q = std::make_shared<QuantizedWeight>();
  q->rows = rows, q->cols = cols;
  q->bits = 0;
  for (int b = 2; b <= 8; ++b)
    if ((cols * b + 7) / 8 == rb) {
      q->bits = b;
      break;
    }
  if (q->bits == 0)
    fail("{}: {}.qcodes has {} bytes per row: no bit width 2..8 packs {} columns so", src, prefix, rb, cols);
  if (G <= 0 || cols % G != 0)
    fail("{}: {}.scales has {} groups, which does not divide {} columns", src, prefix, G, cols);
  q->group_size = cols / G;
  expect(codes, "qcodes", DType::U8, {rows, rb});
  expect(scales, "scales", DType::F16, {rows, G});
  expect(zeros, "qzeros", DType::U8, {rows, G});
  q->codes = codes.as<uint8_t>();
  q->scales = scales.as<uint16_t>();
  q->zeros = zeros.as<uint8_t>();
  const uint32_t maxq = (1u << q->bits) - 1;
  for (int64_t i = 0; i < rows * G; ++i)
    if (q->zeros[i] > maxq)
      fail("{}: {}.qzeros[{}] = {} exceeds 2^{}-1", src, prefix, i, q->zeros[i], q->bits);
  if (ckpt.has(prefix + ".g_idx")) {
    const TensorView& gi = ckpt.get(prefix + ".g_idx");
    expect(gi, "g_idx", DType::I32, {cols});
    q->g_idx = gi.as<int32_t>();
    for (int64_t c = 0; c < cols; ++c)
      if (q->g_idx[c] < 0 || q->g_idx[c] >= G)
        fail("{}: {}.g_idx[{}] = {} is not a group in [0, {})", src, prefix, c, q->g_idx[c], G);
  }
  return q;
}

void add_quantized_tensors(std::map<std::string, TensorView>& out, const std::string& prefix,
                           const QuantizedWeight& w) {
  auto view = [](DType dt, std::vector<int64_t> shape, const void* data) {
    TensorView t;
    t.dtype = dt;
    t.shape = std::move(shape);
    t.data = data;
    t.nbytes = size_t(t.numel()) * dtype_size(dt);
    return t;
  };
  const int64_t G = w.n_groups();
  out[prefix + ".qcodes"] = view(DType::U8, {w.rows, int64_t(w.row_bytes())}, w.codes);
  out[prefix + ".scales"] = view(DType::F16, {w.rows, G}, w.scales);
  out[prefix + ".qzeros"] = view(DType::U8, {w.rows, G}, w.zeros);
  if (w.g_idx) out[prefix + ".g_idx"] = view(DType::I32, {w.cols}, w.g_idx);
}

}  // namespace lowbit

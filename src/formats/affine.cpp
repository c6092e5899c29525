#include "formats/affine.h"

#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace lowbit {

void check_affine_weight(const AffineWeight& w, std::string_view what) {
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

const AffineWeight& as_affine(const PackedWeight& w) {
  LOWBIT_ASSERT(&w.format() == &affine_format());
  return static_cast<const AffineWeight&>(w);
}

void affine_dequantize_rows_scalar(const AffineWeight& w, int64_t r0, int64_t nr, float* out) {
  const int64_t G = w.n_groups();
  for (int64_t r = r0; r < r0 + nr; ++r) {
    const uint8_t* row = w.codes + size_t(r) * w.row_bytes();
    float* o = out + (r - r0) * w.cols;
    for (int64_t c = 0; c < w.cols; ++c) {
      const int64_t g = w.group_of(c);
      const float s = f16_to_f32(w.scales[r * G + g]);
      const float z = float(w.zeros[r * G + g]);
      o[c] = s * (float(packed_code(row, w.bits, c)) - z);
    }
  }
}

namespace {

// t's elements as T: the tensor itself when aligned for T, else a copy in `copy`.
template <class T>
const T* aligned_view(const TensorView& t, std::vector<T>& copy) {
  if (reinterpret_cast<uintptr_t>(t.data) % alignof(T) == 0) return t.as<T>();
  copy.resize(t.nbytes / sizeof(T));
  std::memcpy(copy.data(), t.data, copy.size() * sizeof(T));
  return copy.data();
}

std::vector<FormatTensor> affine_tensors(const PackedWeight& pw) {
  const AffineWeight& w = as_affine(pw);
  const int64_t G = w.n_groups();
  std::vector<FormatTensor> out = {
      {"qcodes", format_tensor(DType::U8, {w.rows, int64_t(w.row_bytes())}, w.codes)},
      {"scales", format_tensor(DType::F16, {w.rows, G}, w.scales)},
      {"qzeros", format_tensor(DType::U8, {w.rows, G}, w.zeros)}};
  if (w.g_idx) out.push_back({"g_idx", format_tensor(DType::I32, {w.cols}, w.g_idx)});
  return out;
}

std::shared_ptr<PackedWeight> affine_from_tensors(const TensorLookup& get, int64_t rows, int64_t cols,
                                                  const std::string& what) {
  auto need = [&](const char* suffix) -> const TensorView& {
    const TensorView* t = get(suffix);
    if (!t) fail("{}.{}: missing (the affine format needs qcodes, scales and qzeros)", what, suffix);
    return *t;
  };
  const TensorView& codes = need("qcodes");
  const TensorView& scales = need("scales");
  const TensorView& zeros = need("qzeros");
  if (codes.shape.size() != 2 || scales.shape.size() != 2) fail("{}.qcodes/.scales must be 2-D", what);
  const int64_t rb = codes.shape[1], G = scales.shape[1];
  auto q = std::make_shared<AffineWeight>();
  q->rows = rows, q->cols = cols;
  q->bits = 0;
  for (int b = 2; b <= 8; ++b)
    if ((cols * b + 7) / 8 == rb) {
      q->bits = b;
      break;
    }
  if (q->bits == 0)
    fail("{}.qcodes has {} bytes per row: no bit width 2..8 packs {} columns so", what, rb, cols);
  if (G <= 0 || cols % G != 0)
    fail("{}.scales has {} groups, which does not divide {} columns", what, G, cols);
  q->group_size = cols / G;
  expect_tensor(codes, what, "qcodes", DType::U8, {rows, rb});
  expect_tensor(scales, what, "scales", DType::F16, {rows, G});
  expect_tensor(zeros, what, "qzeros", DType::U8, {rows, G});
  // safetensors does not align tensors: a file may place the F16 scales or the I32 g_idx at an odd offset.
  // Such a tensor is copied to aligned memory (q->owner keeps it) instead of being read misaligned.
  struct Copies {
    std::vector<uint16_t> scales;
    std::vector<int32_t> g_idx;
  };
  auto copies = std::make_shared<Copies>();
  q->codes = codes.as<uint8_t>();
  q->scales = aligned_view(scales, copies->scales);
  q->zeros = zeros.as<uint8_t>();
  const uint32_t maxq = (1u << q->bits) - 1;
  for (int64_t i = 0; i < rows * G; ++i)
    if (q->zeros[i] > maxq) fail("{}.qzeros[{}] = {} exceeds 2^{}-1", what, i, q->zeros[i], q->bits);
  if (const TensorView* gi = get("g_idx")) {
    expect_tensor(*gi, what, "g_idx", DType::I32, {cols});
    q->g_idx = aligned_view(*gi, copies->g_idx);
    for (int64_t c = 0; c < cols; ++c)
      if (q->g_idx[c] < 0 || q->g_idx[c] >= G)
        fail("{}.g_idx[{}] = {} is not a group in [0, {})", what, c, q->g_idx[c], G);
  }
  if (!copies->scales.empty() || !copies->g_idx.empty()) q->owner = copies;
  return q;
}

}  // namespace

const Format& affine_format() {
  static const Format f = [] {
    Format f;
    f.name = "affine";
    f.summary =
        "b-bit codes (2..8) with an fp16 scale and a uint8 zero-point per (row, group), optional g_idx";
    f.marker_suffix = "qcodes";
    f.bits_per_weight = [](const PackedWeight& w) { return as_affine(w).bits_per_weight(); };
    f.dequantize_ref = [](const PackedWeight& w, int64_t r0, int64_t nr, float* out) {
      affine_dequantize_rows_scalar(as_affine(w), r0, nr, out);
    };
    f.tensors = affine_tensors;
    f.from_tensors = affine_from_tensors;
    return f;
  }();
  return f;
}

}  // namespace lowbit

#include "formats/slim.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "formats/affine.h"

namespace lowbit {

namespace {

void check_slim_shape(int64_t rows, int64_t cols, int64_t gs, std::string_view what) {
  if (rows <= 0 || cols <= 0) fail("{}: bad shape ({}, {})", what, rows, cols);
  if (gs <= 0 || gs % 8 != 0 || cols % gs != 0)
    fail("{}: slim group size {} must be a multiple of 8 dividing the {} input columns", what, gs, cols);
}

// The buffers lowbit owns (SlimWeight::derived): the derived tables always; every buffer of a new weight;
// copies of misaligned fp16 tensors of a loaded one.
struct SlimStorage {
  std::vector<int64_t> offset;
  std::vector<int32_t> one_index;
  std::vector<uint8_t> bits, codes, zeros;
  std::vector<uint16_t> scales, means;
};

// Fills st's derived tables from w.bits (already validated to 1..8) and points w at them.
void derive(SlimWeight& w, SlimStorage& st) {
  const int64_t G = w.n_groups();
  st.offset.assign(size_t(G + 1), 0);
  st.one_index.assign(size_t(G), -1);
  int64_t n1 = 0;
  for (int64_t g = 0; g < G; ++g) {
    st.offset[size_t(g + 1)] = st.offset[size_t(g)] + w.group_size * w.bits[g] / 8;
    if (w.bits[g] == 1) st.one_index[size_t(g)] = int32_t(n1++);
  }
  w.group_offset = st.offset.data();
  w.one_index = st.one_index.data();
  w.n_one_bit = n1;
}

bool f16_finite(uint16_t h) {
  return (h & 0x7C00) != 0x7C00;  // exponent all ones: ±∞ or NaN
}

}  // namespace

double SlimWeight::bits_per_weight() const {
  const double n = double(rows) * double(cols), G = double(n_groups());
  return (8.0 * double(rows) * double(row_bytes()) + 24.0 * double(rows) * G +
          16.0 * double(rows * n_one_bit) + 8.0 * G) /
         n;
}

double SlimWeight::mean_bits() const {
  double s = 0;
  for (int64_t g = 0; g < n_groups(); ++g) s += double(bits[g]) * double(group_size);
  return s / double(cols);
}

const SlimWeight& as_slim(const PackedWeight& w) {
  LOWBIT_ASSERT(&w.format() == &slim_format());
  return static_cast<const SlimWeight&>(w);
}

void check_slim_weight(const SlimWeight& w, std::string_view what) {
  check_slim_shape(w.rows, w.cols, w.group_size, what);
  if (!w.bits || !w.codes || !w.scales || !w.zeros || !w.group_offset || !w.one_index)
    fail("{}: missing slim buffers", what);
  const int64_t G = w.n_groups();
  int64_t n1 = 0;
  for (int64_t g = 0; g < G; ++g) {
    const int b = w.bits[g];
    if (b < 1 || b > 8) fail("{}: group {} has bit width {} (expected 1..8)", what, g, b);
    if (w.group_offset[g + 1] - w.group_offset[g] != w.group_size * b / 8 ||
        w.one_index[g] != (b == 1 ? n1 : -1))
      fail("{}: the derived group tables disagree with the bit widths (group {})", what, g);
    n1 += b == 1;
  }
  if (w.group_offset[0] != 0 || w.n_one_bit != n1)
    fail("{}: the derived group tables disagree with the bit widths", what);
  if (n1 > 0 && !w.means) fail("{}: missing the means ({} of the {} groups have 1 bit)", what, n1, G);
}

void slim_dequantize_rows_scalar(const SlimWeight& w, int64_t r0, int64_t nr, float* out) {
  const int64_t G = w.n_groups(), gs = w.group_size, G1 = w.n_one_bit;
  const size_t rb = w.row_bytes();
  for (int64_t r = r0; r < r0 + nr; ++r) {
    const uint8_t* row = w.codes + size_t(r) * rb;
    float* o = out + (r - r0) * w.cols;
    for (int64_t g = 0; g < G; ++g) {
      const int b = w.bits[g];
      const uint8_t* gp = row + w.group_offset[g];
      const float s = f16_to_f32(w.scales[r * G + g]);
      const uint8_t z = w.zeros[r * G + g];
      const float m = b == 1 ? f16_to_f32(w.means[r * G1 + w.one_index[g]]) : 0.0f;
      for (int64_t c = 0; c < gs; ++c) o[g * gs + c] = slim_value(b, packed_code(gp, b, c), s, z, m);
    }
  }
}

std::shared_ptr<SlimWeight> make_slim(int64_t rows, int64_t cols, int64_t gs, const uint8_t* bits,
                                      const uint8_t* codes, const float* scales, const uint8_t* zeros,
                                      const float* means) {
  check_slim_shape(rows, cols, gs, "make_slim");
  const int64_t G = cols / gs;
  for (int64_t g = 0; g < G; ++g)
    if (bits[g] < 1 || bits[g] > 8) fail("make_slim: group {} has bit width {} (expected 1..8)", g, bits[g]);
  auto st = std::make_shared<SlimStorage>();
  auto w = std::make_shared<SlimWeight>();
  w->rows = rows, w->cols = cols, w->group_size = gs;
  st->bits.assign(bits, bits + G);
  w->bits = st->bits.data();
  derive(*w, *st);
  const int64_t G1 = w->n_one_bit;
  const size_t rb = w->row_bytes();
  auto to_f16 = [&](float v, const char* name, int64_t r, int64_t g) {
    const uint16_t h = f32_to_f16(v);
    if (!f16_finite(h))
      fail("make_slim: {} of row {} group {} is {}, {}", name, r, g, v,
           std::isfinite(v) ? "which overflows fp16" : "not finite");
    return h;
  };
  st->codes.assign(rb * size_t(rows), 0);
  st->zeros.assign(size_t(rows * G), 0);
  st->scales.resize(size_t(rows * G));
  st->means.resize(size_t(rows * G1));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < G; ++g) {
      const int b = bits[g];
      const uint32_t maxq = (1u << b) - 1;
      uint8_t* gp = st->codes.data() + size_t(r) * rb + w->group_offset[g];
      for (int64_t c = 0; c < gs; ++c) {
        const uint8_t q = codes[r * cols + g * gs + c];
        if (q > maxq)
          fail("make_slim: code {} of row {} column {} does not fit group {}'s {} bits", q, r, g * gs + c, g,
               b);
        pack_code(gp, b, c, q);
      }
      st->scales[size_t(r * G + g)] = to_f16(scales[r * G + g], "scale", r, g);
      if (b == 1) {
        st->means[size_t(r * G1 + w->one_index[g])] = to_f16(means[r * G + g], "mean", r, g);
      } else {
        if (zeros[r * G + g] > maxq)
          fail("make_slim: zero-point {} of row {} group {} exceeds 2^{}-1", zeros[r * G + g], r, g, b);
        st->zeros[size_t(r * G + g)] = zeros[r * G + g];
      }
    }
  w->codes = st->codes.data();
  w->scales = st->scales.data();
  w->zeros = st->zeros.data();
  w->means = G1 > 0 ? st->means.data() : nullptr;
  w->owner = st;
  w->derived = std::move(st);
  return w;
}

namespace {

std::vector<FormatTensor> slim_tensors(const PackedWeight& pw) {
  const SlimWeight& w = as_slim(pw);
  const int64_t G = w.n_groups();
  std::vector<FormatTensor> out = {
      {"sl_codes", format_tensor(DType::U8, {w.rows, int64_t(w.row_bytes())}, w.codes)},
      {"sl_bits", format_tensor(DType::U8, {G}, w.bits)},
      {"sl_scales", format_tensor(DType::F16, {w.rows, G}, w.scales)},
      {"sl_zeros", format_tensor(DType::U8, {w.rows, G}, w.zeros)}};
  if (w.n_one_bit > 0) out.push_back({"sl_means", format_tensor(DType::F16, {w.rows, w.n_one_bit}, w.means)});
  return out;
}

// t's fp16 elements: the tensor itself when 2-byte aligned, else a copy in `copy`.
const uint16_t* aligned_f16(const TensorView& t, std::vector<uint16_t>& copy) {
  if (reinterpret_cast<uintptr_t>(t.data) % alignof(uint16_t) == 0) return t.as<uint16_t>();
  copy.resize(t.nbytes / sizeof(uint16_t));
  std::memcpy(copy.data(), t.data, copy.size() * sizeof(uint16_t));
  return copy.data();
}

std::shared_ptr<PackedWeight> slim_from_tensors(const TensorLookup& get, int64_t rows, int64_t cols,
                                                const std::string& what) {
  if (rows <= 0 || cols <= 0 || cols % 8 != 0)
    fail("{}: slim needs a shape (rows, cols) with cols a multiple of 8, not ({}, {})", what, rows, cols);
  auto need = [&](const char* suffix) -> const TensorView& {
    const TensorView* t = get(suffix);
    if (!t)
      fail("{}.{}: missing (the slim format needs sl_codes, sl_bits, sl_scales and sl_zeros)", what, suffix);
    return *t;
  };
  const TensorView& codes = need("sl_codes");
  const TensorView& bits = need("sl_bits");
  const TensorView& scales = need("sl_scales");
  const TensorView& zeros = need("sl_zeros");
  if (bits.shape.size() != 1 || bits.shape[0] <= 0 || cols % bits.shape[0] != 0)
    fail("{}.sl_bits has shape {}, not (groups) with the groups dividing {} columns", what,
         shape_str(bits.shape), cols);
  const int64_t G = bits.shape[0], gs = cols / G;
  check_slim_shape(rows, cols, gs, what + ".sl_bits");
  expect_tensor(bits, what, "sl_bits", DType::U8, {G});

  auto st = std::make_shared<SlimStorage>();
  auto w = std::make_shared<SlimWeight>();
  w->rows = rows, w->cols = cols, w->group_size = gs;
  w->bits = bits.as<uint8_t>();
  for (int64_t g = 0; g < G; ++g)
    if (w->bits[g] < 1 || w->bits[g] > 8)
      fail("{}.sl_bits[{}] = {} is not a bit width in 1..8", what, g, w->bits[g]);
  derive(*w, *st);
  const int64_t G1 = w->n_one_bit;
  expect_tensor(codes, what, "sl_codes", DType::U8, {rows, int64_t(w->row_bytes())});
  expect_tensor(scales, what, "sl_scales", DType::F16, {rows, G});
  expect_tensor(zeros, what, "sl_zeros", DType::U8, {rows, G});
  const TensorView* means = get("sl_means");
  if (!means && G1 > 0)
    fail("{}.sl_means: missing ({} of the {} groups have 1 bit and need means)", what, G1, G);
  if (means) expect_tensor(*means, what, "sl_means", DType::F16, {rows, G1});

  w->codes = codes.as<uint8_t>();
  w->zeros = zeros.as<uint8_t>();
  w->scales = aligned_f16(scales, st->scales);
  if (G1 > 0) w->means = aligned_f16(*means, st->means);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < G; ++g) {
      const int b = w->bits[g];
      const uint8_t z = w->zeros[r * G + g];
      if (b == 1 && z != 0)
        fail("{}.sl_zeros: row {} group {} is a 1-bit group, its zero-point must be 0, not {}", what, r, g,
             z);
      if (b >= 2 && z > (1u << b) - 1)
        fail("{}.sl_zeros: row {} group {} has zero-point {}, above 2^{}-1", what, r, g, z, b);
      if (!f16_finite(w->scales[r * G + g]))
        fail("{}.sl_scales: row {} group {} is {} (the scales must be finite)", what, r, g,
             f16_to_f32(w->scales[r * G + g]));
      if (b == 1 && !f16_finite(w->means[r * G1 + w->one_index[g]]))
        fail("{}.sl_means: row {} group {} is {} (the means must be finite)", what, r, g,
             f16_to_f32(w->means[r * G1 + w->one_index[g]]));
    }
  w->derived = std::move(st);  // the caller sets owner (the mapping the views point into)
  return w;
}

}  // namespace

const Format& slim_format() {
  static const Format f = [] {
    Format f;
    f.name = "slim";
    f.summary =
        "SliM-LLM group-wise mixed precision: a bit width 1..8 per column group; fp16 scale and uint8 "
        "zero-point per (row, group), fp16 mean per (row, 1-bit group)";
    f.marker_suffix = "sl_codes";
    f.bits_per_weight = [](const PackedWeight& w) { return as_slim(w).bits_per_weight(); };
    f.dequantize_ref = [](const PackedWeight& w, int64_t r0, int64_t nr, float* out) {
      slim_dequantize_rows_scalar(as_slim(w), r0, nr, out);
    };
    f.tensors = slim_tensors;
    f.from_tensors = slim_from_tensors;
    return f;
  }();
  return f;
}

}  // namespace lowbit

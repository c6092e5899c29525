#include "formats/dualbin.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace lowbit {

namespace {

// The shape rules shared by check_dualbin_weight, make_dualbin and from_tensors.
void check_dualbin_shape(int64_t rows, int64_t cols, int64_t group_size, std::string_view what) {
  if (rows <= 0 || cols <= 0) fail("{}: bad shape ({}, {})", what, rows, cols);
  if (cols % 8 != 0)
    fail("{}: dualbin needs in_features to be a multiple of 8 (whole bytes of bits per row), not {}", what,
         cols);
  if (group_size <= 0 || group_size % 8 != 0 || cols % group_size != 0)
    fail("{}: dualbin group size {} must be a multiple of 8 dividing the {} input columns", what, group_size,
         cols);
}

// The weight's buffers when lowbit owns them (make_dualbin, dualbin_from_affine).
struct DualBinStorage {
  std::vector<uint8_t> plane1, plane2;
  std::vector<uint16_t> scales;
};

std::shared_ptr<DualBinWeight> owned_dualbin(int64_t rows, int64_t cols, int64_t group_size,
                                             std::shared_ptr<DualBinStorage> st) {
  auto w = std::make_shared<DualBinWeight>();
  w->rows = rows, w->cols = cols, w->group_size = group_size;
  w->plane1 = st->plane1.data();
  w->plane2 = st->plane2.data();
  w->scales = st->scales.data();
  w->owner = std::move(st);
  return w;
}

}  // namespace

void check_dualbin_weight(const DualBinWeight& w, std::string_view what) {
  check_dualbin_shape(w.rows, w.cols, w.group_size, what);
  if (!w.plane1 || !w.plane2 || !w.scales) fail("{}: missing bit planes or scales", what);
}

const DualBinWeight& as_dualbin(const PackedWeight& w) {
  LOWBIT_ASSERT(&w.format() == &dualbin_format());
  return static_cast<const DualBinWeight&>(w);
}

void dualbin_dequantize_rows_scalar(const DualBinWeight& w, int64_t r0, int64_t nr, float* out) {
  const int64_t G = w.n_groups();
  for (int64_t r = r0; r < r0 + nr; ++r) {
    const uint8_t* p1 = w.plane1 + size_t(r) * w.row_bytes();
    const uint8_t* p2 = w.plane2 + size_t(r) * w.row_bytes();
    float* o = out + (r - r0) * w.cols;
    for (int64_t g = 0; g < G; ++g) {
      const float a1 = f16_to_f32(w.scales[2 * (r * G + g)]), a2 = f16_to_f32(w.scales[2 * (r * G + g) + 1]);
      for (int64_t c = g * w.group_size; c < (g + 1) * w.group_size; ++c) {
        const float v1 = plane_bit(p1, c) ? a1 : 0.0f, v2 = plane_bit(p2, c) ? a2 : 0.0f;
        o[c] = v1 + v2;
      }
    }
  }
}

std::shared_ptr<DualBinWeight> make_dualbin(int64_t rows, int64_t cols, int64_t group_size, const uint8_t* b1,
                                            const uint8_t* b2, const float* alpha1, const float* alpha2) {
  check_dualbin_shape(rows, cols, group_size, "make_dualbin");
  if (!b1 || !b2 || !alpha1 || !alpha2) fail("make_dualbin: missing bits or scales");
  const int64_t G = cols / group_size;
  auto st = std::make_shared<DualBinStorage>();
  st->plane1.assign(size_t(rows * cols / 8), 0);
  st->plane2.assign(size_t(rows * cols / 8), 0);
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (b1[i] > 1 || b2[i] > 1)
      fail("make_dualbin: bit [{}, {}] is {}, not 0 or 1", i / cols, i % cols, b1[i] > 1 ? b1[i] : b2[i]);
    st->plane1[size_t(i / 8)] |= uint8_t(b1[i] << (i % 8));
    st->plane2[size_t(i / 8)] |= uint8_t(b2[i] << (i % 8));
  }
  st->scales.resize(size_t(2 * rows * G));
  for (int64_t i = 0; i < rows * G; ++i)
    for (int k = 0; k < 2; ++k) {
      const float a = (k == 0 ? alpha1 : alpha2)[i];
      const uint16_t h = f32_to_f16(a);  // round to nearest even; past the largest half it becomes ±∞
      if (!std::isfinite(f16_to_f32(h)))
        fail("make_dualbin: alpha{} of row {} group {} is {}, {}", k + 1, i / G, i % G, a,
             std::isfinite(a) ? "which overflows fp16" : "not finite");
      st->scales[size_t(2 * i + k)] = h;
    }
  return owned_dualbin(rows, cols, group_size, std::move(st));
}

// The affine 2-bit grid of a group is S·d with d = q − Z ∈ {−Z, …, 3 − Z}: four consecutive integers, one of
// them 0. Dual binarization represents {0, α1, α2, α1 + α2}; with |α1| = 2|S| and |α2| = |S| that is
// {0, ±2S, ±S, ±2S ± S}, i.e. S times one of the four windows of consecutive integers containing 0:
//   Z = 0: d ∈ {0, 1, 2, 3}    = {0, 2, 1, 3}      (α1, α2) = ( 2S,  S), d = 2·b1 + b2
//   Z = 1: d ∈ {−1, 0, 1, 2}   = {0, 2, −1, 1}     (α1, α2) = ( 2S, −S), d = 2·b1 − b2  (DB-LLM's α1 = 2s,
//                                                                                        α2 = −s)
//   Z = 2: d ∈ {−2, −1, 0, 1}  = {0, −2, 1, −1}    (α1, α2) = (−2S,  S), d = −2·b1 + b2
//   Z = 3: d ∈ {−3, −2, −1, 0} = {0, −2, −1, −3}   (α1, α2) = (−2S, −S), d = −2·b1 − b2
// so α1 = σ1·2S, α2 = σ2·S with σ1 = +1 for Z < 2 (−1 otherwise) and σ2 = +1 for even Z (−1 otherwise), and
// d = σ1·2·b1 + σ2·b2. Each d has exactly one (b1, b2): b2 = d mod 2 (the parity of d), then
// b1 = (d − σ2·b2)/(2σ1), which is 0 or 1 for every d in the window.
//
// Exactness: 2S and −S are exact in fp16 (a doubling and a sign flip; 2S can only overflow, which is an
// error), and every affine value S·d (|d| ≤ 3) and every dual value (b1·α1 + b2·α2 ∈ {0, ±S, ±2S, ±3S}) is
// an fp16 significand (11 bits) times at most 3, exact in f32. So the two dequantizers give the same number
// for every weight, and the same bits except for the sign of zero: affine's S·0 is −0 when S < 0 (and S = ±0
// gives ±0 by the sign of d), dual's 0 + 0 is +0. With S > 0, as every quantizer writes it, they are bitwise
// equal.
std::shared_ptr<DualBinWeight> dualbin_from_affine(const AffineWeight& w) {
  check_affine_weight(w, "dualbin_from_affine");
  if (w.bits != 2) fail("dualbin_from_affine: needs a 2-bit affine weight, not {} bits", w.bits);
  if (w.g_idx) fail("dualbin_from_affine: act-order (g_idx) weights have no contiguous groups");
  check_dualbin_shape(w.rows, w.cols, w.group_size, "dualbin_from_affine");
  const int64_t rows = w.rows, cols = w.cols, gs = w.group_size, G = w.n_groups();
  auto st = std::make_shared<DualBinStorage>();
  st->plane1.assign(size_t(rows * cols / 8), 0);
  st->plane2.assign(size_t(rows * cols / 8), 0);
  st->scales.resize(size_t(2 * rows * G));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* codes = w.codes + size_t(r) * w.row_bytes();
    uint8_t* p1 = st->plane1.data() + size_t(r) * size_t(cols / 8);
    uint8_t* p2 = st->plane2.data() + size_t(r) * size_t(cols / 8);
    for (int64_t g = 0; g < G; ++g) {
      const int z = w.zeros[r * G + g];
      if (z > 3) fail("dualbin_from_affine: zero-point {} of row {} group {} is outside [0, 3]", z, r, g);
      const uint16_t s = w.scales[r * G + g];
      const uint16_t s2 = f32_to_f16(2.0f * f16_to_f32(s));  // exact unless it overflows
      if (!std::isfinite(f16_to_f32(s2)))
        fail("dualbin_from_affine: scale {} of row {} group {}: 2·S is not finite in fp16", f16_to_f32(s), r,
             g);
      const int sigma1 = z < 2 ? 1 : -1, sigma2 = z % 2 == 0 ? 1 : -1;
      constexpr uint16_t kSign = 0x8000;  // negating an fp16 flips its sign bit
      st->scales[size_t(2 * (r * G + g))] = sigma1 > 0 ? s2 : uint16_t(s2 ^ kSign);
      st->scales[size_t(2 * (r * G + g) + 1)] = sigma2 > 0 ? s : uint16_t(s ^ kSign);
      for (int64_t c = g * gs; c < (g + 1) * gs; ++c) {
        const int d = int(packed_code(codes, 2, c)) - z;
        const int b2 = d & 1;  // two's complement: the parity of d for negative d too
        const int b1 = (d - sigma2 * b2) / (2 * sigma1);
        LOWBIT_ASSERT(b1 == 0 || b1 == 1);
        p1[c / 8] |= uint8_t(b1 << (c % 8));
        p2[c / 8] |= uint8_t(b2 << (c % 8));
      }
    }
  }
  return owned_dualbin(rows, cols, gs, std::move(st));
}

namespace {

std::vector<FormatTensor> dualbin_tensors(const PackedWeight& pw) {
  const DualBinWeight& w = as_dualbin(pw);
  const int64_t rb = int64_t(w.row_bytes());
  return {{"bplane1", format_tensor(DType::U8, {w.rows, rb}, w.plane1)},
          {"bplane2", format_tensor(DType::U8, {w.rows, rb}, w.plane2)},
          {"bscales", format_tensor(DType::F16, {w.rows, 2 * w.n_groups()}, w.scales)}};
}

std::shared_ptr<PackedWeight> dualbin_from_tensors(const TensorLookup& get, int64_t rows, int64_t cols,
                                                   const std::string& what) {
  if (rows <= 0 || cols <= 0) fail("{}: bad shape ({}, {})", what, rows, cols);
  if (cols % 8 != 0) fail("{}: dualbin needs in_features to be a multiple of 8, not {}", what, cols);
  auto need = [&](const char* suffix) -> const TensorView& {
    const TensorView* t = get(suffix);
    if (!t) fail("{}.{}: missing (the dualbin format needs bplane1, bplane2 and bscales)", what, suffix);
    return *t;
  };
  const TensorView& p1 = need("bplane1");
  const TensorView& p2 = need("bplane2");
  const TensorView& sc = need("bscales");
  if (sc.shape.size() != 2)
    fail("{}.bscales must be 2-D (rows, 2·groups), not {}", what, shape_str(sc.shape));
  const int64_t G2 = sc.shape[1];
  if (G2 <= 0 || G2 % 2 != 0 || cols % (G2 / 2) != 0)
    fail("{}.bscales has {} columns, not 2 scales times a number of groups dividing {} columns", what, G2,
         cols);
  const int64_t gs = cols / (G2 / 2);
  if (gs % 8 != 0)
    fail("{}.bscales has {} groups of {} columns: dualbin groups must be a multiple of 8", what, G2 / 2, gs);
  expect_tensor(p1, what, "bplane1", DType::U8, {rows, cols / 8});
  expect_tensor(p2, what, "bplane2", DType::U8, {rows, cols / 8});
  expect_tensor(sc, what, "bscales", DType::F16, {rows, G2});
  auto q = std::make_shared<DualBinWeight>();
  q->rows = rows, q->cols = cols, q->group_size = gs;
  q->plane1 = p1.as<uint8_t>();
  q->plane2 = p2.as<uint8_t>();
  // safetensors does not align tensors: F16 scales at an odd offset are copied (q->owner keeps the copy)
  // instead of being read misaligned. Non-finite scales are not rejected: they dequantize to ±∞/NaN, which
  // no kernel indexes with, so they cannot cause an out-of-bounds access.
  if (reinterpret_cast<uintptr_t>(sc.data) % alignof(uint16_t) != 0) {
    auto copy = std::make_shared<std::vector<uint16_t>>(size_t(sc.numel()));
    std::memcpy(copy->data(), sc.data, copy->size() * sizeof(uint16_t));
    q->scales = copy->data();
    q->owner = copy;
  } else {
    q->scales = sc.as<uint16_t>();
  }
  return q;
}

}  // namespace

const Format& dualbin_format() {
  static const Format f = [] {
    Format f;
    f.name = "dualbin";
    f.summary =
        "DB-LLM flexible dual binarization: two {0,1} bit planes with an fp16 scale each per (row, group); "
        "2 + 32/group bits per weight";
    f.marker_suffix = "bplane1";
    f.bits_per_weight = [](const PackedWeight& w) { return as_dualbin(w).bits_per_weight(); };
    f.dequantize_ref = [](const PackedWeight& w, int64_t r0, int64_t nr, float* out) {
      dualbin_dequantize_rows_scalar(as_dualbin(w), r0, nr, out);
    };
    f.tensors = dualbin_tensors;
    f.from_tensors = dualbin_from_tensors;
    return f;
  }();
  return f;
}

}  // namespace lowbit

#include "formats/billm.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace lowbit {

namespace {

const char* const kParName[kBillmPar] = {"mu1", "alpha1", "mu2", "alpha2", "mu_s", "alpha_s1", "alpha_s2"};

void check_billm_shape(int64_t rows, int64_t cols, int64_t gs, std::string_view what) {
  if (rows <= 0 || cols <= 0) fail("{}: bad shape ({}, {})", what, rows, cols);
  if (gs <= 0 || gs % 32 != 0 || cols % gs != 0)
    fail("{}: billm group size {} must be a multiple of 32 dividing the {} input columns", what, gs, cols);
}

// The buffers lowbit owns (BillmWeight::derived): all of them for a new weight, a copy of a misaligned bl_par
// for a loaded one.
struct BillmStorage {
  std::vector<uint8_t> signs, plane2, salient;
  std::vector<uint16_t> par;
};

}  // namespace

double BillmWeight::bits_per_weight() const {
  const double n = double(rows) * double(cols);
  return (2.0 * n + 16.0 * kBillmPar * double(rows) * double(n_groups()) + double(cols)) / n;
}

const BillmWeight& as_billm(const PackedWeight& w) {
  LOWBIT_ASSERT(&w.format() == &billm_format());
  return static_cast<const BillmWeight&>(w);
}

void check_billm_weight(const BillmWeight& w, std::string_view what) {
  check_billm_shape(w.rows, w.cols, w.group_size, what);
  if (!w.signs || !w.plane2 || !w.salient || !w.par) fail("{}: missing billm buffers", what);
}

void billm_dequantize_rows_scalar(const BillmWeight& w, int64_t r0, int64_t nr, float* out) {
  const int64_t G = w.n_groups(), gs = w.group_size;
  for (int64_t r = r0; r < r0 + nr; ++r) {
    const uint8_t* pa = w.signs + size_t(r) * w.row_bytes();
    const uint8_t* pb = w.plane2 + size_t(r) * w.row_bytes();
    float* o = out + (r - r0) * w.cols;
    for (int64_t g = 0; g < G; ++g) {
      float lv[8];
      billm_levels(w.params(r, g), lv);
      for (int64_t c = g * gs; c < (g + 1) * gs; ++c)
        o[c] = lv[int(plane_bit(pa, c)) + 2 * int(plane_bit(pb, c)) + 4 * int(plane_bit(w.salient, c))];
    }
  }
}

std::shared_ptr<BillmWeight> make_billm(int64_t rows, int64_t cols, int64_t gs, const uint8_t* salient,
                                        const uint8_t* a, const uint8_t* b, const float* par) {
  check_billm_shape(rows, cols, gs, "make_billm");
  const int64_t G = cols / gs;
  auto st = std::make_shared<BillmStorage>();
  st->signs.assign(size_t(rows * cols / 8), 0);
  st->plane2.assign(size_t(rows * cols / 8), 0);
  st->salient.assign(size_t(cols / 8), 0);
  st->par.resize(size_t(kBillmPar * rows * G));
  for (int64_t c = 0; c < cols; ++c)
    if (salient[c]) st->salient[size_t(c / 8)] |= uint8_t(1u << (c % 8));
  for (size_t i = 0; i < size_t(rows * cols); ++i) {
    if (a[i]) st->signs[i / 8] |= uint8_t(1u << (i % 8));
    if (b[i]) st->plane2[i / 8] |= uint8_t(1u << (i % 8));
  }
  for (size_t i = 0; i < st->par.size(); ++i) {
    const float v = par[i];
    const uint16_t h = f32_to_f16(v);
    if (!std::isfinite(f16_to_f32(h))) {
      const size_t rg = i / kBillmPar;
      fail("make_billm: {} of row {} block {} is {}, {}", kParName[i % kBillmPar], rg / size_t(G),
           rg % size_t(G), v, std::isfinite(v) ? "which overflows fp16" : "not finite");
    }
    st->par[i] = h;
  }
  auto w = std::make_shared<BillmWeight>();
  w->rows = rows, w->cols = cols, w->group_size = gs;
  w->signs = st->signs.data();
  w->plane2 = st->plane2.data();
  w->salient = st->salient.data();
  w->par = st->par.data();
  w->owner = st;
  w->derived = std::move(st);
  return w;
}

namespace {

std::vector<FormatTensor> billm_tensors(const PackedWeight& pw) {
  const BillmWeight& w = as_billm(pw);
  const int64_t rb = int64_t(w.row_bytes()), G = w.n_groups();
  return {{"bl_signs", format_tensor(DType::U8, {w.rows, rb}, w.signs)},
          {"bl_plane2", format_tensor(DType::U8, {w.rows, rb}, w.plane2)},
          {"bl_salient", format_tensor(DType::U8, {rb}, w.salient)},
          {"bl_par", format_tensor(DType::F16, {w.rows, kBillmPar * G}, w.par)}};
}

std::shared_ptr<PackedWeight> billm_from_tensors(const TensorLookup& get, int64_t rows, int64_t cols,
                                                 const std::string& what) {
  if (rows <= 0 || cols <= 0 || cols % 32 != 0)
    fail("{}: billm needs a shape (rows, cols) with cols a multiple of 32, not ({}, {})", what, rows, cols);
  auto need = [&](const char* suffix) -> const TensorView& {
    const TensorView* t = get(suffix);
    if (!t)
      fail("{}.{}: missing (the billm format needs bl_signs, bl_plane2, bl_salient and bl_par)", what,
           suffix);
    return *t;
  };
  const TensorView& sa = need("bl_signs");
  const TensorView& sb = need("bl_plane2");
  const TensorView& sal = need("bl_salient");
  const TensorView& par = need("bl_par");
  const int64_t P = kBillmPar;
  if (par.shape.size() != 2 || par.shape[1] <= 0 || par.shape[1] % P != 0 || cols % (par.shape[1] / P) != 0)
    fail("{}.bl_par has shape {}, not (rows, 7·blocks) with the blocks dividing {} columns", what,
         shape_str(par.shape), cols);
  const int64_t G = par.shape[1] / P, gs = cols / G;
  check_billm_shape(rows, cols, gs, what + ".bl_par");
  expect_tensor(sa, what, "bl_signs", DType::U8, {rows, cols / 8});
  expect_tensor(sb, what, "bl_plane2", DType::U8, {rows, cols / 8});
  expect_tensor(sal, what, "bl_salient", DType::U8, {cols / 8});
  expect_tensor(par, what, "bl_par", DType::F16, {rows, P * G});

  auto st = std::make_shared<BillmStorage>();
  auto w = std::make_shared<BillmWeight>();
  w->rows = rows, w->cols = cols, w->group_size = gs;
  w->signs = sa.as<uint8_t>();
  w->plane2 = sb.as<uint8_t>();
  w->salient = sal.as<uint8_t>();
  if (reinterpret_cast<uintptr_t>(par.data) % alignof(uint16_t) == 0) {
    w->par = par.as<uint16_t>();
  } else {
    st->par.resize(size_t(par.numel()));
    std::memcpy(st->par.data(), par.data, st->par.size() * sizeof(uint16_t));
    w->par = st->par.data();
  }
  for (int64_t i = 0; i < rows * P * G; ++i)
    if ((w->par[i] & 0x7C00) == 0x7C00)  // exponent all ones: ±∞ or NaN
      fail("{}.bl_par: {} of row {} block {} is {} (the parameters must be finite)", what, kParName[i % P],
           i / P / G, i / P % G, f16_to_f32(w->par[i]));
  w->derived = std::move(st);  // the caller sets owner (the mapping the views point into)
  return w;
}

}  // namespace

const Format& billm_format() {
  static const Format f = [] {
    Format f;
    f.name = "billm";
    f.summary =
        "BiLLM binarization: two bit planes per weight (sign and group or residual sign), salient columns, "
        "7 fp16 parameters (mu1, alpha1, mu2, alpha2, mu_s, alpha_s1, alpha_s2) per (row, block)";
    f.marker_suffix = "bl_signs";
    f.bits_per_weight = [](const PackedWeight& w) { return as_billm(w).bits_per_weight(); };
    f.dequantize_ref = [](const PackedWeight& w, int64_t r0, int64_t nr, float* out) {
      billm_dequantize_rows_scalar(as_billm(w), r0, nr, out);
    };
    f.tensors = billm_tensors;
    f.from_tensors = billm_from_tensors;
    return f;
  }();
  return f;
}

}  // namespace lowbit

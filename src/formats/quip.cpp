#include "formats/quip.h"

#include <fmt/ranges.h>

#include <cmath>
#include <cstring>
#include <numbers>

#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "formats/hadamard.h"

namespace lowbit {

std::string_view rotation_kind_name(RotationKind k) {
  return k == RotationKind::Kronecker ? "kronecker" : "hadamard";
}

std::pair<int64_t, int64_t> butterfly_factors(int64_t n) {
  std::vector<int64_t> pf;  // sorted prime factors, with multiplicity
  for (int64_t p = 2, m = n; m > 1;) {
    if (p * p > m) {
      pf.push_back(m);
      break;
    }
    if (m % p == 0)
      pf.push_back(p), m /= p;
    else
      ++p;
  }
  int64_t p1 = 1, p2 = 1;
  for (size_t i = 0; i < pf.size(); ++i) (i % 2 == 0 ? p1 : p2) *= pf[i];
  return {p1, p2};
}

namespace {

// Labels of the independent draws of one rotation (subkeys of its seed).
constexpr int64_t kMaxBlock = 1024;

enum : uint64_t { kPermIn = 1, kPermOut = 2, kBlockA = 3, kBlockB = 4, kSigns = 5 };

// A uniformly random permutation (Fisher–Yates from the top).
std::vector<int32_t> random_perm(int64_t n, uint64_t key) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[size_t(i)] = int32_t(i);
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = int64_t(uniform01(key, uint64_t(i)) * double(i + 1));
    std::swap(p[size_t(i)], p[size_t(std::min(j, i))]);
  }
  return p;
}

// A Haar-random matrix of SO(p), row-major: the Q of G = QR for a standard Gaussian G with R's diagonal
// positive is Haar on O(p) (Mezzadri 2007, "How to generate random matrices from the classical compact
// groups", §5); negating one column where det G < 0 maps O(p)'s other half onto SO(p) uniformly
// (scipy's special_ortho_group draws from the same distribution).
std::vector<float> random_special_orthogonal(int64_t p, uint64_t key) {
  const size_t P = size_t(p);
  std::vector<double> g(P * P);
  for (size_t i = 0; i < P * P; ++i) {  // Box–Muller; 1 − u ∈ (0, 1] keeps the logarithm finite
    const double u1 = uniform01(key, 2 * i), u2 = uniform01(key, 2 * i + 1);
    g[i] = std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }
  // sign(det G) by Gaussian elimination with partial pivoting (on a copy).
  std::vector<double> lu = g;
  int sign = 1;
  for (size_t c = 0; c < P; ++c) {
    size_t piv = c;
    for (size_t r = c + 1; r < P; ++r)
      if (std::abs(lu[r * P + c]) > std::abs(lu[piv * P + c])) piv = r;
    if (piv != c) {
      for (size_t k = 0; k < P; ++k) std::swap(lu[c * P + k], lu[piv * P + k]);
      sign = -sign;
    }
    const double d = lu[c * P + c];
    if (d < 0) sign = -sign;
    if (d == 0) continue;  // probability zero; any sign will do
    for (size_t r = c + 1; r < P; ++r) {
      const double f = lu[r * P + c] / d;
      for (size_t k = c; k < P; ++k) lu[r * P + k] -= f * lu[c * P + k];
    }
  }
  // Modified Gram–Schmidt on the columns, twice ("twice is enough", Giraud et al. 2005): R's diagonal is the
  // columns' norms, positive. On the transpose, so that each column is contiguous.
  std::vector<double> gt(P * P);  // gt[c][r] = g[r][c]
  for (size_t r = 0; r < P; ++r)
    for (size_t c = 0; c < P; ++c) gt[c * P + r] = g[r * P + c];
  for (size_t c = 0; c < P; ++c) {
    double* col = &gt[c * P];
    for (int pass = 0; pass < 2; ++pass) {
      for (size_t k = 0; k < c; ++k) {
        const double* prev = &gt[k * P];
        double dot = 0;
        for (size_t r = 0; r < P; ++r) dot += prev[r] * col[r];
        for (size_t r = 0; r < P; ++r) col[r] -= dot * prev[r];
      }
      double nrm = 0;
      for (size_t r = 0; r < P; ++r) nrm += col[r] * col[r];
      nrm = std::sqrt(nrm);
      for (size_t r = 0; r < P; ++r) col[r] /= nrm;
    }
  }
  if (sign < 0)
    for (size_t r = 0; r < P; ++r) gt[r] = -gt[r];
  std::vector<float> q(P * P);
  for (size_t r = 0; r < P; ++r)
    for (size_t c = 0; c < P; ++c) q[r * P + c] = float(gt[c * P + r]);
  return q;
}

template <class T>
void kron_ref(const Rotation& r, T* x, bool transpose) {
  const int64_t n = r.n, p1 = r.p1, p2 = r.p2;
  std::vector<T> t(static_cast<size_t>(n)), u(static_cast<size_t>(n));
  const std::vector<int32_t>& first = transpose ? r.perm_out : r.perm_in;
  const std::vector<int32_t>& last = transpose ? r.perm_in : r.perm_out;
  // P x gathers (t[i] = x[perm[i]]); Pᵀ x scatters (t[perm[i]] = x[i]).
  for (int64_t i = 0; i < n; ++i) {
    if (!transpose)
      t[size_t(i)] = x[first[size_t(i)]];
    else
      t[size_t(first[size_t(i)])] = x[i];
  }
  // (A ⊗ B)·x = A·X·Bᵀ and (A ⊗ B)ᵀ·x = Aᵀ·X·B with X = t as (p1, p2); the Bᵀ side (rows of X) first.
  for (int64_t k = 0; k < p1; ++k)
    for (int64_t j = 0; j < p2; ++j) {
      T s = 0;
      for (int64_t i = 0; i < p2; ++i)
        s += T(transpose ? r.b[size_t(i * p2 + j)] : r.b[size_t(j * p2 + i)]) * t[size_t(k * p2 + i)];
      u[size_t(k * p2 + j)] = s;
    }
  for (int64_t a = 0; a < p1; ++a)
    for (int64_t j = 0; j < p2; ++j) {
      T s = 0;
      for (int64_t k = 0; k < p1; ++k)
        s += T(transpose ? r.a[size_t(k * p1 + a)] : r.a[size_t(a * p1 + k)]) * u[size_t(k * p2 + j)];
      t[size_t(a * p2 + j)] = s;
    }
  for (int64_t i = 0; i < n; ++i) {
    if (!transpose)
      x[i] = t[size_t(last[size_t(i)])];
    else
      x[last[size_t(i)]] = t[size_t(i)];
  }
}

}  // namespace

std::shared_ptr<const Rotation> make_rotation(RotationKind kind, int64_t n, uint64_t seed,
                                              std::string_view what) {
  auto r = std::make_shared<Rotation>();
  r->kind = kind, r->n = n, r->seed = seed;
  if (n < 2) fail("{}: cannot rotate a width of {}", what, n);
  if (kind == RotationKind::Kronecker) {
    std::tie(r->p1, r->p2) = butterfly_factors(n);
    if (r->p2 == 1)
      fail(
          "{}: width {} is prime, so it has no factorisation p1·p2 for QuIP's Kronecker rotation (use "
          "--rotation hadamard if it is 2^k·12/20/28, or leave this model to another method)",
          what, n);
    // Drawing a p×p block costs O(p³) (a width 2·2039 would take half a minute); real widths factor into
    // small blocks (4096 → 64·64, 11008 → 688·16, 14336 → 64·224).
    if (std::max(r->p1, r->p2) > kMaxBlock)
      fail(
          "{}: width {} factors as {}·{}, a block above {} (its random rotation would take too long to draw; "
          "use --rotation hadamard if the width is 2^k·12/20/28)",
          what, n, r->p1, r->p2, kMaxBlock);
    r->perm_in = random_perm(n, subkey(seed, kPermIn));
    r->perm_out = random_perm(n, subkey(seed, kPermOut));
    r->a = random_special_orthogonal(r->p1, subkey(seed, kBlockA));
    r->b = random_special_orthogonal(r->p2, subkey(seed, kBlockB));
    r->bt.resize(r->b.size());
    for (int64_t i = 0; i < r->p2; ++i)
      for (int64_t j = 0; j < r->p2; ++j) r->bt[size_t(j * r->p2 + i)] = r->b[size_t(i * r->p2 + j)];
  } else {
    r->had_m = hadamard_base(n);
    if (r->had_m == 0)
      fail(
          "{}: width {} is not 2^k·m with m in {{1, 12, 20, 28}}, so it has no Hadamard rotation (use "
          "--rotation kronecker)",
          what, n);
    r->signs.resize(size_t(n));
    const uint64_t key = subkey(seed, kSigns);
    for (int64_t i = 0; i < n; ++i) r->signs[size_t(i)] = uniform01(key, uint64_t(i)) < 0.5 ? -1.0f : 1.0f;
  }
  return r;
}

template <class T>
void rotate_ref(const Rotation& r, T* x, bool transpose) {
  if (r.kind == RotationKind::Kronecker) {
    kron_ref(r, x, transpose);
    return;
  }
  // R = H·diag(σ) (H orthonormal, formats/hadamard.h): R x = H(σ ⊙ x), Rᵀ x = σ ⊙ (Hᵀ x).
  if (!transpose)
    for (int64_t i = 0; i < r.n; ++i) x[i] *= T(r.signs[size_t(i)]);
  hadamard_ref(x, r.n, transpose);
  if (transpose)
    for (int64_t i = 0; i < r.n; ++i) x[i] *= T(r.signs[size_t(i)]);
}
template void rotate_ref<float>(const Rotation&, float*, bool);
template void rotate_ref<double>(const Rotation&, double*, bool);

// --- the weight ---

namespace {

struct QuipStorage {
  std::vector<uint8_t> codes;
  std::vector<float> d;
  std::vector<uint16_t> ones;  // (rows) fp16 1.0: the centred affine view's scales
  std::vector<uint8_t> zeros;  // (rows) (maxq − 1)/2
};

// The centred view's scale/zero rows (owned by `keep`, the weight's `derived`).
void set_centred(QuipWeight& w, QuipStorage& keep) {
  keep.ones.assign(size_t(w.rows), f32_to_f16(1.0f));
  keep.zeros.assign(size_t(w.rows), uint8_t((w.maxq() - 1) / 2));
  AffineWeight& c = w.centred;
  c.rows = w.rows, c.cols = w.cols, c.bits = w.bits, c.group_size = w.cols;
  c.codes = w.codes, c.scales = keep.ones.data(), c.zeros = keep.zeros.data(), c.g_idx = nullptr;
}

void check_quip_shape(int bits, int64_t rows, int64_t cols, std::string_view what) {
  if (rows <= 0 || cols <= 0) fail("{}: bad shape ({}, {})", what, rows, cols);
  if (bits < 2 || bits > 4) fail("{}: QuIP stores 2, 3 or 4 bits per weight, not {}", what, bits);
}

int64_t quip_row_bytes(int64_t cols, int bits) {
  return (cols * bits + 7) / 8;
}

// The bit widths in 2..4 whose packed rows of `cols` codes are `row_bytes` long. The checkpoint stores the
// width only through the row length, and for cols ≤ 6 two widths can share one (6 codes: 3 bytes at 3 and
// at 4 bits); from 7 columns on the three lengths differ.
std::vector<int> widths_with_row_bytes(int64_t cols, int64_t row_bytes) {
  std::vector<int> out;
  for (int b = 2; b <= 4; ++b)
    if (quip_row_bytes(cols, b) == row_bytes) out.push_back(b);
  return out;
}

}  // namespace

const QuipWeight& as_quip(const PackedWeight& w) {
  LOWBIT_ASSERT(&w.format() == &quip_format());
  return static_cast<const QuipWeight&>(w);
}

std::shared_ptr<QuipWeight> make_quip(int bits, int64_t rows, int64_t cols, const uint8_t* codes, float scale,
                                      const float* d, std::shared_ptr<const Rotation> U,
                                      std::shared_ptr<const Rotation> V) {
  check_quip_shape(bits, rows, cols, "make_quip");
  for (int b : widths_with_row_bytes(cols, quip_row_bytes(cols, bits)))
    if (b != bits)
      fail(
          "make_quip: {} columns of {}-bit codes take {} bytes per row, as {}-bit codes do: a checkpoint "
          "could not tell the widths apart",
          cols, bits, quip_row_bytes(cols, bits), b);
  LOWBIT_ASSERT(U && V && U->n == rows && V->n == cols && U->kind == V->kind);
  if (!std::isfinite(scale) || scale <= 0) fail("make_quip: scale {} is not a positive number", scale);
  auto st = std::make_shared<QuipStorage>();
  auto w = std::make_shared<QuipWeight>();
  w->rows = rows, w->cols = cols, w->bits = bits, w->scale = scale;
  st->codes.assign(w->row_bytes() * size_t(rows), 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const uint8_t q = codes[r * cols + c];
      if (q > w->maxq()) fail("make_quip: code {} at [{}, {}] exceeds {}", q, r, c, w->maxq());
      pack_code(st->codes.data() + size_t(r) * w->row_bytes(), bits, c, q);
    }
  st->d.assign(d, d + cols);
  for (float v : st->d)
    if (!std::isfinite(v) || v <= 0) fail("make_quip: column scale d = {} is not a positive number", v);
  w->codes = st->codes.data();
  w->d = st->d.data();
  w->meta[0] = int64_t(U->kind), w->meta[1] = int64_t(U->seed), w->meta[2] = int64_t(V->seed);
  w->U = std::move(U), w->V = std::move(V);
  set_centred(*w, *st);
  w->owner = st;
  w->derived = std::move(st);
  return w;
}

void quip_rotated_rows(const QuipWeight& w, int64_t r0, int64_t nr, float* out) {
  const int maxq = w.maxq();
  for (int64_t r = r0; r < r0 + nr; ++r) {
    const uint8_t* row = w.codes + size_t(r) * w.row_bytes();
    for (int64_t c = 0; c < w.cols; ++c)
      out[(r - r0) * w.cols + c] =
          w.scale * (float(2 * int(packed_code(row, w.bits, c)) - maxq) / float(maxq));
  }
}

void quip_dequantize_rows_ref(const QuipWeight& w, int64_t r0, int64_t nr, float* out) {
  const int64_t rows = w.rows, cols = w.cols;
  std::vector<float> wq(static_cast<size_t>(rows * cols));  // Ŵ′
  quip_rotated_rows(w, 0, rows, wq.data());
  std::vector<double> u(static_cast<size_t>(rows)), acc(static_cast<size_t>(cols));
  for (int64_t r = r0; r < r0 + nr; ++r) {
    // Row r of Uᵀ is column r of U: U·e_r.
    std::fill(u.begin(), u.end(), 0.0);
    u[size_t(r)] = 1;
    rotate_ref(*w.U, u.data(), false);
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t k = 0; k < rows; ++k)
      for (int64_t c = 0; c < cols; ++c) acc[size_t(c)] += u[size_t(k)] * double(wq[size_t(k * cols + c)]);
    rotate_ref(*w.V, acc.data(), true);  // a row vector times V is Vᵀ applied to it
    for (int64_t c = 0; c < cols; ++c) out[(r - r0) * cols + c] = float(acc[size_t(c)] / double(w.d[c]));
  }
}

namespace {

std::vector<FormatTensor> quip_tensors(const PackedWeight& pw) {
  const QuipWeight& w = as_quip(pw);
  return {{"quip_codes", format_tensor(DType::U8, {w.rows, int64_t(w.row_bytes())}, w.codes)},
          {"quip_scale", format_tensor(DType::F32, {1}, &w.scale)},
          {"quip_d", format_tensor(DType::F32, {w.cols}, w.d)},
          {"quip_meta", format_tensor(DType::I64, {3}, w.meta)}};
}

std::shared_ptr<PackedWeight> quip_from_tensors(const TensorLookup& get, int64_t rows, int64_t cols,
                                                const std::string& what) {
  if (rows <= 0 || cols <= 0) fail("{}: bad shape ({}, {})", what, rows, cols);
  auto need = [&](const char* suffix) -> const TensorView& {
    const TensorView* t = get(suffix);
    if (!t)
      fail("{}.{}: missing (the quip format needs quip_codes, quip_scale, quip_d and quip_meta)", what,
           suffix);
    return *t;
  };
  const TensorView& codes = need("quip_codes");
  if (codes.shape.size() != 2 || codes.shape[0] != rows)
    fail("{}.quip_codes is {}, expected ({}, row bytes)", what, shape_str(codes.shape), rows);
  const std::vector<int> widths = widths_with_row_bytes(cols, codes.shape[1]);  // whose row length it is
  if (widths.empty())
    fail("{}.quip_codes rows have {} bytes: not 2, 3 or 4 bits for {} columns", what, codes.shape[1], cols);
  if (widths.size() > 1)
    fail("{}.quip_codes rows have {} bytes, as {} columns of {} bits do: the bit width is ambiguous", what,
         codes.shape[1], cols, fmt::join(widths, " or "));
  const int bits = widths[0];
  expect_tensor(codes, what, "quip_codes", DType::U8, {rows, codes.shape[1]});
  const TensorView& sc = need("quip_scale");
  const TensorView& d = need("quip_d");
  const TensorView& meta = need("quip_meta");
  expect_tensor(sc, what, "quip_scale", DType::F32, {1});
  expect_tensor(d, what, "quip_d", DType::F32, {cols});
  expect_tensor(meta, what, "quip_meta", DType::I64, {3});
  auto w = std::make_shared<QuipWeight>();
  auto st = std::make_shared<QuipStorage>();
  w->rows = rows, w->cols = cols, w->bits = bits;
  std::memcpy(&w->scale, sc.data, sizeof(float));
  std::memcpy(w->meta, meta.data, sizeof(w->meta));
  if (!std::isfinite(w->scale) || w->scale <= 0)
    fail("{}.quip_scale is {}, not a positive number", what, w->scale);
  st->d.resize(size_t(cols));  // copied: aligned, and checked once here
  std::memcpy(st->d.data(), d.data, size_t(cols) * sizeof(float));
  for (int64_t c = 0; c < cols; ++c)
    if (!std::isfinite(st->d[size_t(c)]) || st->d[size_t(c)] <= 0)
      fail("{}.quip_d[{}] is {}, not a positive number", what, c, st->d[size_t(c)]);
  if (w->meta[0] != int64_t(RotationKind::Kronecker) && w->meta[0] != int64_t(RotationKind::Hadamard))
    fail("{}.quip_meta names rotation kind {}, not 0 (kronecker) or 1 (hadamard)", what, w->meta[0]);
  const auto kind = RotationKind(w->meta[0]);
  w->U = make_rotation(kind, rows, uint64_t(w->meta[1]), what + " (rows)");
  w->V = make_rotation(kind, cols, uint64_t(w->meta[2]), what + " (columns)");
  w->codes = codes.as<uint8_t>();
  w->d = st->d.data();
  set_centred(*w, *st);
  w->derived = std::move(st);
  return w;
}

}  // namespace

const Format& quip_format() {
  static const Format f = [] {
    Format f;
    f.name = "quip";
    f.summary =
        "QuIP incoherence processing: b-bit codes of U·W·diag(d)·Vᵀ with one scale, the column scales d and "
        "the seeds of the random rotations U, V (applied at inference, never materialised)";
    f.marker_suffix = "quip_codes";
    f.bits_per_weight = [](const PackedWeight& w) { return as_quip(w).bits_per_weight(); };
    f.dequantize_ref = [](const PackedWeight& w, int64_t r0, int64_t nr, float* out) {
      quip_dequantize_rows_ref(as_quip(w), r0, nr, out);
    };
    f.tensors = quip_tensors;
    f.from_tensors = quip_from_tensors;
    return f;
  }();
  return f;
}

}  // namespace lowbit

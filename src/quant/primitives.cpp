#include "quant/primitives.h"

#include <cmath>
#include <limits>

#include "core/dtype.h"
#include "core/error.h"
#include "core/lapack.h"

namespace lowbit {

AffineParams params_for_range(float xmin, float xmax, const QuantSpec& spec) {
  const int maxq = spec.maxq();
  const float s32 = (xmax - xmin) / float(maxq);
  AffineParams p;
  p.scale_f16 = f32_to_f16(s32);
  p.scale = f16_to_f32(p.scale_f16);
  if (std::isinf(p.scale) || std::isnan(p.scale))
    fail("quantization scale {} (range [{}, {}]) does not fit fp16", s32, xmin, xmax);
  if (p.scale == 0) {  // range below fp16's resolution: smallest positive subnormal, still covers the range
    p.scale_f16 = 1;
    p.scale = f16_to_f32(1);
  }
  if (spec.sym) {
    p.zero = uint8_t((maxq + 1) / 2);
  } else {
    const float z = std::nearbyint(-xmin / s32);
    p.zero = uint8_t(std::clamp(z, 0.0f, float(maxq)));
  }
  return p;
}

void zero_inclusive_range(const float* x, int64_t n, float* lo, float* hi) {
  float xmin = 0, xmax = 0;
  for (int64_t i = 0; i < n; ++i) {
    xmin = std::min(xmin, x[i]);
    xmax = std::max(xmax, x[i]);
  }
  if (xmin == xmax) xmin = -1, xmax = 1;  // all zero
  *lo = xmin, *hi = xmax;
}

int64_t fix_dead_columns(std::vector<float>& H, float* W, int64_t rows, int64_t cols) {
  int64_t dead = 0;
  for (int64_t i = 0; i < cols; ++i) {
    float& hii = H[size_t(i * cols + i)];
    if (hii == 0) {
      hii = 1;
      for (int64_t r = 0; r < rows; ++r) W[r * cols + i] = 0;
      ++dead;
    }
  }
  return dead;
}

AffineParams find_params(const float* x, int64_t n, const QuantSpec& spec) {
  float xmin, xmax;
  zero_inclusive_range(x, n, &xmin, &xmax);
  if (spec.sym) {  // (−1, 1) stays as it is
    xmax = std::max(-xmin, xmax);
    xmin = -xmax;
  }
  AffineParams best = params_for_range(xmin, xmax, spec);
  if (!spec.mse) return best;

  const int maxq = spec.maxq();
  double best_err = std::numeric_limits<double>::infinity();
  const int steps = int(spec.mse_maxshrink * spec.mse_grid);
  for (int i = 0; i < steps; ++i) {
    const float p = float(1.0 - double(i) / spec.mse_grid);
    const AffineParams cand = params_for_range(p * xmin, p * xmax, spec);
    double err = 0;
    for (int64_t j = 0; j < n; ++j)
      err += std::pow(std::fabs(double(fake_quantize_value(x[j], cand, maxq)) - x[j]), spec.mse_norm);
    if (err < best_err) best_err = err, best = cand;
  }
  return best;
}

struct PackedBuilder::Storage {
  std::vector<uint8_t> codes, zeros;
  std::vector<uint16_t> scales;
  std::vector<int32_t> g_idx;
};

PackedBuilder::PackedBuilder(int bits, int64_t rows, int64_t cols, int64_t group_size, bool with_g_idx)
    : st_(std::make_shared<Storage>()), bits_(bits) {
  LOWBIT_ASSERT(bits >= 2 && bits <= 8 && rows > 0 && cols > 0 && group_size > 0 && cols % group_size == 0);
  AffineWeight& w = w_;
  w.bits = bits;
  w.rows = rows;
  w.cols = cols;
  w.group_size = group_size;
  row_bytes_ = int64_t(w.row_bytes());
  st_->codes.assign(size_t(rows * row_bytes_), 0);
  st_->scales.assign(size_t(rows * w.n_groups()), 0);
  st_->zeros.assign(st_->scales.size(), 0);
  if (with_g_idx) st_->g_idx.assign(size_t(cols), 0);
  codes_ = st_->codes.data();
}

void PackedBuilder::set_params(int64_t row, int64_t group, const AffineParams& p) {
  const size_t i = size_t(row * w_.n_groups() + group);
  st_->scales[i] = p.scale_f16;
  st_->zeros[i] = p.zero;
}

int32_t* PackedBuilder::g_idx() {
  LOWBIT_ASSERT(!st_->g_idx.empty());
  return st_->g_idx.data();
}

std::shared_ptr<const AffineWeight> PackedBuilder::finish() {
  auto st = std::move(st_);
  LOWBIT_ASSERT(st);
  auto out = std::make_shared<AffineWeight>(w_);
  AffineWeight& w = *out;
  w.codes = st->codes.data();
  w.scales = st->scales.data();
  w.zeros = st->zeros.data();
  w.g_idx = st->g_idx.empty() ? nullptr : st->g_idx.data();
  if (w.g_idx)
    for (int64_t c = 0; c < w.cols; ++c) LOWBIT_ASSERT(w.g_idx[c] >= 0 && w.g_idx[c] < w.n_groups());
  w.owner = st;
  return out;
}

void check_finite(const float* w, int64_t rows, int64_t cols, std::string_view name) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float v = w[r * cols + c];
      if (!std::isfinite(v)) fail("{} contains {} at ({}, {})", name, std::isnan(v) ? "NaN" : "Inf", r, c);
    }
}

void check_quant_shape(int bits, int64_t group_size, int64_t cols, std::string_view name) {
  if (bits < 2 || bits > 8) fail("{}: {}-bit quantization is not supported (bits must be 2..8)", name, bits);
  if (group_size <= 0 && group_size != kPerChannel)
    fail("{}: group size {} is invalid (a positive size, or {} for per channel)", name, group_size,
         kPerChannel);
  if (group_size > 0 && cols % group_size != 0)
    fail("{}: group size {} does not divide in_features {}", name, group_size, cols);
}

namespace {

// In place: H (n, n) row-major symmetric -> its row-major upper triangle holds U with H⁻¹ = UᵀU (the
// reference's cholesky(cholesky_inverse(cholesky(H)), upper=True)). A symmetric row-major matrix is its own
// column-major transpose and the column-major lower triangle is the row-major upper one, so three
// column-major 'L' calls do it: potrf (H = LLᵀ), potri (H⁻¹ from L), potrf again (H⁻¹ = L'L'ᵀ, U = L'ᵀ sits
// in the row-major upper triangle). Returns false when H is not (numerically) positive definite.
bool upper_cholesky_of_inverse(std::vector<float>& H, int64_t n) {
  const int N = int(n);
  if (lapack::cholesky_upper(H.data(), N) != 0) return false;
  if (lapack::cholesky_inverse_upper(H.data(), N) != 0) return false;
  if (lapack::cholesky_upper(H.data(), N) != 0) return false;
  for (int64_t i = 0; i < n; ++i)  // the factor is what the algorithm reads; anything non-finite is a failure
    for (int64_t j = i; j < n; ++j)
      if (!std::isfinite(H[size_t(i * n + j)])) return false;
  return true;
}

}  // namespace

std::vector<float> torch_linspace_f32(float start, float end, int steps) {
  LOWBIT_ASSERT(steps >= 2);
  const int half = steps / 2, lanes = 8;
  const float step = (end - start) / float(steps - 1);
  auto at = [&](int i) { return i < half ? start + step * float(i) : end - step * float(steps - i - 1); };
  std::vector<float> v(static_cast<size_t>(steps));
  int i = 0;
  for (; i + lanes <= steps; i += lanes) {
    const float base = at(i);
    for (int k = 0; k < lanes; ++k) v[size_t(i + k)] = base + float(k) * step;
  }
  for (; i < steps; ++i) v[size_t(i)] = at(i);
  return v;
}

double hessian_inverse_factor(std::vector<float>& H, int64_t n, double damp0, int max_retries,
                              std::string_view name) {
  double mean_diag = 0;
  for (int64_t i = 0; i < n; ++i) mean_diag += H[size_t(i * n + i)];
  mean_diag /= double(n);
  // Factorized in place (no second n² buffer: 256 MiB for a 1B model's down_proj): the LAPACK calls write
  // only the upper triangle, so after a failure the strict lower one still holds H to restore it from.
  std::vector<float> diag(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) diag[size_t(i)] = H[size_t(i * n + i)];
  double damp = damp0;
  for (int attempt = 0;; ++attempt) {
    const float lambda = float(damp * mean_diag);
    for (int64_t i = 0; i < n; ++i) H[size_t(i * n + i)] = diag[size_t(i)] + lambda;
    if (upper_cholesky_of_inverse(H, n)) return damp;
    if (attempt >= max_retries)
      fail("{}: Hessian is not positive definite even with dampening {} x mean(diag H) (started at {})", name,
           damp, damp0);
    damp *= 10;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i + 1; j < n; ++j) H[size_t(i * n + j)] = H[size_t(j * n + i)];
  }
}

}  // namespace lowbit

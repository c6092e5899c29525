// Highway SIMD bodies for kernels/rotation.h, compiled once per target and dispatched at run time.
//
// Kronecker rotation of one row x (n = p1·p2) viewed as X (p1, p2): R·x = P_out·vec(A·X·Bᵀ)·P_in (formats/
// quip.h). Both small products are written as sums of scaled rows, so every vector operation runs along a
// contiguous row of p2 values:
//   Bᵀ side: U[k][:] = Σ_i X[k][i] · Bᵀ[i][:]   (Rᵀ: B[i][:])
//   A side:  Y[a][:] = Σ_k A[a][k] · U[k][:]   (Rᵀ: A[k][a])
// in the reference's order (ascending i, k), one fused multiply-add per term where the target has FMA (the
// reference rounds the product and the sum apart: the tests bound the difference).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/rotation_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "kernels/hadamard.h"
#include "kernels/rotation.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// out[0, len) = Σ_i c(i) · rows[i·stride, +len) for i < m: the rows' combination with coefficients c.
template <class Coef>
void Combine(float* HWY_RESTRICT out, const float* HWY_RESTRICT rows, int64_t stride, int64_t m, int64_t len,
             Coef c) {
  const hn::ScalableTag<float> d;
  const int64_t L = int64_t(hn::Lanes(d));
  int64_t j = 0;
  for (; j + 4 * L <= len; j += 4 * L) {  // four vectors of the output stay in registers over i
    auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
    for (int64_t i = 0; i < m; ++i) {
      const auto v = hn::Set(d, c(i));
      const float* r = rows + i * stride + j;
      a0 = hn::MulAdd(v, hn::LoadU(d, r), a0);
      a1 = hn::MulAdd(v, hn::LoadU(d, r + L), a1);
      a2 = hn::MulAdd(v, hn::LoadU(d, r + 2 * L), a2);
      a3 = hn::MulAdd(v, hn::LoadU(d, r + 3 * L), a3);
    }
    hn::StoreU(a0, d, out + j);
    hn::StoreU(a1, d, out + j + L);
    hn::StoreU(a2, d, out + j + 2 * L);
    hn::StoreU(a3, d, out + j + 3 * L);
  }
  for (; j + L <= len; j += L) {
    auto a = hn::Zero(d);
    for (int64_t i = 0; i < m; ++i) a = hn::MulAdd(hn::Set(d, c(i)), hn::LoadU(d, rows + i * stride + j), a);
    hn::StoreU(a, d, out + j);
  }
  for (; j < len; ++j) {  // the tail, as the reference does it
    float s = 0;
    for (int64_t i = 0; i < m; ++i) s += c(i) * rows[i * stride + j];
    out[j] = s;
  }
}

// One row, in place; t and u are scratch of r.n floats.
void KronRow(const Rotation& r, float* HWY_RESTRICT x, bool transpose, float* HWY_RESTRICT t,
             float* HWY_RESTRICT u) {
  const int64_t n = r.n, p1 = r.p1, p2 = r.p2;
  const int32_t* first = transpose ? r.perm_out.data() : r.perm_in.data();
  const int32_t* last = transpose ? r.perm_in.data() : r.perm_out.data();
  if (!transpose)
    for (int64_t i = 0; i < n; ++i) t[i] = x[first[i]];
  else
    for (int64_t i = 0; i < n; ++i) t[first[i]] = x[i];
  const float* bm = transpose ? r.b.data() : r.bt.data();  // rows i of Bᵀ (forward) or B (transpose)
  for (int64_t k = 0; k < p1; ++k) {
    const float* tk = t + k * p2;
    Combine(u + k * p2, bm, p2, p2, p2, [&](int64_t i) { return tk[i]; });
  }
  const float* A = r.a.data();
  for (int64_t a = 0; a < p1; ++a) {
    if (!transpose)
      Combine(t + a * p2, u, p2, p1, p2, [&](int64_t k) { return A[a * p1 + k]; });
    else
      Combine(t + a * p2, u, p2, p1, p2, [&](int64_t k) { return A[k * p1 + a]; });
  }
  if (!transpose)
    for (int64_t i = 0; i < n; ++i) x[i] = t[last[i]];
  else
    for (int64_t i = 0; i < n; ++i) x[last[i]] = t[i];
}

void RotateRows(const Rotation& r, float* x, int64_t count, bool transpose) {
  struct Scratch {
    std::vector<float> t, u;
  };
  const int64_t n = r.n;
  const double work = double(count) * double(n) * double(r.p1 + r.p2);
  parallel_rows_with(
      count,
      [&] {
        return Scratch{std::vector<float>(static_cast<size_t>(n)),
                       std::vector<float>(static_cast<size_t>(n))};
      },
      [&](int64_t i, Scratch& s) { KronRow(r, x + i * n, transpose, s.t.data(), s.u.data()); },
      count > 1 && work > 4e5);
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit {

HWY_EXPORT(RotateRows);

void rotate_rows(const Rotation& r, float* x, int64_t count, bool transpose) {
  if (r.kind == RotationKind::Kronecker) {
    HWY_DYNAMIC_DISPATCH(RotateRows)(r, x, count, transpose);
    return;
  }
  // R = H·diag(σ): the signs around the fast transform (kernels/hadamard.h), as rotate_ref does them.
  const int64_t n = r.n;
  if (!transpose)
    for (int64_t t = 0; t < count; ++t)
      for (int64_t i = 0; i < n; ++i) x[t * n + i] *= r.signs[size_t(i)];
  hadamard_rows(x, count, n, transpose);
  if (transpose)
    for (int64_t t = 0; t < count; ++t)
      for (int64_t i = 0; i < n; ++i) x[t * n + i] *= r.signs[size_t(i)];
}

void rotate_rows_scalar(const Rotation& r, float* x, int64_t count, bool transpose) {
  for (int64_t i = 0; i < count; ++i) rotate_ref(r, x + i * r.n, transpose);
}

}  // namespace lowbit
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/softmax_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target re-includes this file once per target; everything below is compiled for each.
#include <hwy/highway.h>
// (kept apart from the lines above so include sorting cannot move it before foreach_target.h)
#include <hwy/contrib/math/math-inl.h>

#include <algorithm>
#include <cmath>

#include "kernels/softmax.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void Softmax(float* HWY_RESTRICT x, size_t n) {
  if (n == 0) return;
  const hn::ScalableTag<float> d;
  const size_t L = hn::Lanes(d);
  size_t i = 0;
  float m = x[0];
  if (n >= L) {
    auto vm = hn::LoadU(d, x);
    for (; i + L <= n; i += L) vm = hn::Max(vm, hn::LoadU(d, x + i));
    m = hn::GetLane(hn::MaxOfLanes(d, vm));
  }
  for (; i < n; ++i) m = std::max(m, x[i]);
  const auto vm = hn::Set(d, m);
  auto acc = hn::Zero(d);
  for (i = 0; i + L <= n; i += L) {
    const auto e = hn::Exp(d, hn::Sub(hn::LoadU(d, x + i), vm));
    hn::StoreU(e, d, x + i);
    acc = hn::Add(acc, e);
  }
  float s = hn::GetLane(hn::SumOfLanes(d, acc));
  for (; i < n; ++i) s += (x[i] = std::exp(x[i] - m));
  const auto inv = hn::Set(d, 1.0f / s);
  for (i = 0; i + L <= n; i += L) hn::StoreU(hn::Mul(hn::LoadU(d, x + i), inv), d, x + i);
  for (; i < n; ++i) x[i] *= 1.0f / s;
}

void SiluMul(float* HWY_RESTRICT g, const float* HWY_RESTRICT u, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t L = hn::Lanes(d);
  const auto one = hn::Set(d, 1.0f);
  size_t i = 0;
  for (; i + L <= n; i += L) {
    const auto x = hn::LoadU(d, g + i);
    const auto den = hn::Add(one, hn::Exp(d, hn::Neg(x)));
    hn::StoreU(hn::Mul(hn::Div(x, den), hn::LoadU(d, u + i)), d, g + i);
  }
  for (; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit {

HWY_EXPORT(Softmax);
HWY_EXPORT(SiluMul);

void silu_mul(float* g, const float* u, size_t n) {
  HWY_DYNAMIC_DISPATCH(SiluMul)(g, u, n);
}

void silu_mul_scalar(float* g, const float* u, size_t n) {
  for (size_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void softmax_inplace(float* x, size_t n) {
  HWY_DYNAMIC_DISPATCH(Softmax)(x, n);
}

void softmax_inplace_scalar(float* x, size_t n) {
  if (n == 0) return;
  float m = x[0];
  for (size_t i = 1; i < n; ++i) m = std::max(m, x[i]);
  float s = 0;
  for (size_t i = 0; i < n; ++i) s += (x[i] = std::exp(x[i] - m));
  for (size_t i = 0; i < n; ++i) x[i] /= s;
}

}  // namespace lowbit
#endif

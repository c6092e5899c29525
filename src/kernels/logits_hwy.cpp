// The SIMD half of kernels/logits.h: vectorised with Highway and dispatched to the best SIMD target at run
// time; the scalar twins are in kernels/logits.cpp.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/logits_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target re-includes this file once per target; everything below is compiled for each.
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

float MaxOf(const float* p, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t L = hn::Lanes(d);
  float m = p[0];
  size_t i = 0;
  if (n >= L) {
    auto vm = hn::LoadU(d, p);
    for (; i + L <= n; i += L) vm = hn::Max(vm, hn::LoadU(d, p + i));
    m = hn::GetLane(hn::MaxOfLanes(d, vm));
  }
  for (; i < n; ++i) m = std::max(m, p[i]);
  return m;
}

// sum_i exp(p[i] - m): float lanes over blocks of 64 vectors, blocks added in double (relative error ~1e-7
// for any n; hn::Exp is accurate to a few ulp).
double SumExp(const float* p, size_t n, float m) {
  const hn::ScalableTag<float> d;
  const size_t L = hn::Lanes(d);
  const auto vm = hn::Set(d, m);
  double s = 0;
  size_t i = 0;
  while (i + L <= n) {
    auto acc = hn::Zero(d);
    size_t end = std::min(n, i + 64 * L);
    for (; i + L <= end; i += L) acc = hn::Add(acc, hn::Exp(d, hn::Sub(hn::LoadU(d, p + i), vm)));
    s += double(hn::GetLane(hn::SumOfLanes(d, acc)));
  }
  for (; i < n; ++i) s += std::exp(double(p[i]) - double(m));
  return s;
}

// One pass over both rows for KL(P ‖ Q), given their maxima mp and mq, in double lanes like the scalar twin:
// with a = p − mp and b = q − mq (both <= 0), out = {Σ e^a, Σ e^b, Σ e^a·(a − b)}.
void KlSums(const float* p, const float* q, size_t n, float mp, float mq, double* out) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;
  const size_t L = hn::Lanes(dd);
  const auto vmp = hn::Set(dd, double(mp)), vmq = hn::Set(dd, double(mq));
  auto sp = hn::Zero(dd), sq = hn::Zero(dd), t = hn::Zero(dd);
  size_t i = 0;
  for (; i + L <= n; i += L) {
    const auto a = hn::Sub(hn::PromoteTo(dd, hn::LoadU(df, p + i)), vmp);
    const auto b = hn::Sub(hn::PromoteTo(dd, hn::LoadU(df, q + i)), vmq);
    const auto ea = hn::Exp(dd, a);
    sp = hn::Add(sp, ea);
    sq = hn::Add(sq, hn::Exp(dd, b));
    t = hn::MulAdd(ea, hn::Sub(a, b), t);
  }
  out[0] = hn::GetLane(hn::SumOfLanes(dd, sp));
  out[1] = hn::GetLane(hn::SumOfLanes(dd, sq));
  out[2] = hn::GetLane(hn::SumOfLanes(dd, t));
  for (; i < n; ++i) {
    const double a = double(p[i]) - mp, b = double(q[i]) - mq, ea = std::exp(a);
    out[0] += ea;
    out[1] += std::exp(b);
    out[2] += ea * (a - b);
  }
}

// p[i] <- exp(p[i] - m) · c in f32 lanes: softmax probabilities times the gradient's scale.
void ScaledExp(float* p, size_t n, float m, float c) {
  const hn::ScalableTag<float> d;
  const size_t L = hn::Lanes(d);
  const auto vm = hn::Set(d, m), vc = hn::Set(d, c);
  size_t i = 0;
  for (; i + L <= n; i += L) hn::StoreU(hn::Mul(hn::Exp(d, hn::Sub(hn::LoadU(d, p + i), vm)), vc), d, p + i);
  for (; i < n; ++i) p[i] = std::exp(p[i] - m) * c;
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "core/error.h"
#include "kernels/logits.h"

namespace lowbit {
HWY_EXPORT(MaxOf);
HWY_EXPORT(SumExp);
HWY_EXPORT(KlSums);
HWY_EXPORT(ScaledExp);

namespace {
// The first index holding the maximum m (torch.argmax's tie rule).
int64_t first_index_of(const float* row, int64_t n, float m) {
  int64_t i = 0;
  while (i + 1 < n && !(row[i] >= m)) ++i;
  return i;
}
}  // namespace

KlRow kl_divergence_row(const float* p, const float* q, int64_t V) {
  LOWBIT_ASSERT(V > 0);
  const float mp = HWY_DYNAMIC_DISPATCH(MaxOf)(p, size_t(V)), mq = HWY_DYNAMIC_DISPATCH(MaxOf)(q, size_t(V));
  double s[3];
  HWY_DYNAMIC_DISPATCH(KlSums)(p, q, size_t(V), mp, mq, s);
  // Σ p_v (log p_v − log q_v) with log p_v = a_v − log Σ e^a and log q_v = b_v − log Σ e^b.
  const double kl = s[2] / s[0] - std::log(s[0]) + std::log(s[1]);
  return {std::max(kl, 0.0), first_index_of(p, V, mp), first_index_of(q, V, mq)};
}

double cross_entropy_grad_row(float* row, int64_t V, int32_t target, float scale) {
  LOWBIT_ASSERT(V > 0 && target >= 0 && target < V);
  const float m = HWY_DYNAMIC_DISPATCH(MaxOf)(row, size_t(V));
  const double s = HWY_DYNAMIC_DISPATCH(SumExp)(row, size_t(V), m);
  const double loss = double(m) + std::log(s) - double(row[target]);
  HWY_DYNAMIC_DISPATCH(ScaledExp)(row, size_t(V), m, float(double(scale) / s));
  row[target] -= scale;
  return loss;
}

double log_softmax_at(const float* row, int n_vocab, int32_t target, bool* is_argmax) {
  LOWBIT_ASSERT(n_vocab > 0 && target >= 0 && target < n_vocab);
  size_t n = size_t(n_vocab);
  float m = HWY_DYNAMIC_DISPATCH(MaxOf)(row, n);
  double s = HWY_DYNAMIC_DISPATCH(SumExp)(row, n, m);
  // torch.argmax returns the first maximum: target is greedy when it is a maximum and none comes before it
  // (the scan stops at target).
  if (is_argmax) *is_argmax = row[target] >= m && first_index_of(row, int64_t(target) + 1, m) == target;
  return double(row[target]) - double(m) - std::log(s);
}

}  // namespace lowbit
#endif

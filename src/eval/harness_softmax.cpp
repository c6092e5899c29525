// log_softmax_at: the one per-token cost of scoring outside the model (a row of n_vocab logits per scored
// token), vectorised with Highway and dispatched to the best SIMD target at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "eval/harness_softmax.cpp"
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

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "core/error.h"
#include "eval/harness.h"

namespace lowbit {
HWY_EXPORT(MaxOf);
HWY_EXPORT(SumExp);

double log_softmax_at(const float* row, int n_vocab, int32_t target, bool* is_argmax) {
  LOWBIT_ASSERT(n_vocab > 0 && target >= 0 && target < n_vocab);
  size_t n = size_t(n_vocab);
  float m = HWY_DYNAMIC_DISPATCH(MaxOf)(row, n);
  double s = HWY_DYNAMIC_DISPATCH(SumExp)(row, n, m);
  if (is_argmax) {
    // torch.argmax returns the first maximum: target is greedy when it is a maximum and none comes before it.
    bool first = row[target] >= m;
    for (int32_t j = 0; first && j < target; ++j) first = !(row[j] >= m);
    *is_argmax = first;
  }
  return double(row[target]) - double(m) - std::log(s);
}

}  // namespace lowbit
#endif

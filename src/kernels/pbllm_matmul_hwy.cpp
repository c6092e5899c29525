// Highway SIMD bodies for kernels/pbllm_matmul.h, compiled once per target and dispatched at run time.
//
// * Dequantization: out = b ? (μ + α) : (μ + (−α)) lane by lane (the reference's μ + (b ? α : −α), the same
//   f32 additions done once per group), then the salient values S·(q − Z) written over their positions, so
//   the two agree bitwise.
// * GEMV: per group, s += (b ? x : 0) over the group's 32-column blocks of the sign plane (kernels/
//   bitplane-inl.h's lane selection, as the dual-binarization kernel), then tot += 2α·s as one vector FMA;
//   the scalar c_g·Σ_{c∈g} x uses group totals computed once per call for all rows, and the salient weights
//   are a scalar sparse pass per row (about 10% of the weights; their byte codes and positions are read
//   once each).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/pbllm_matmul_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <vector>

#include "core/dtype.h"
#include "core/parallel.h"
#include "kernels/pbllm_matmul.h"

// Per target: PlaneMask, Bits, AddTo.
#include "kernels/bitplane-inl.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Σ over the row's salient weights of (S·(q − Z) − c_g)·x_c for NT tokens.
template <int NT>
HWY_INLINE void SalientCorrection(const PbllmWeight& w, const float* HWY_RESTRICT x, int64_t r, float* corr) {
  const int64_t G = w.n_groups(), gs = w.group_size, cols = w.cols;
  const float S = w.rowpar[2 * r], Z = w.rowpar[2 * r + 1];
  int64_t k = w.row_start[r];
  for (int64_t g = 0; g < G; ++g) {
    const int64_t n = w.counts[r * G + g];
    if (n == 0) continue;
    const float cg = f16_to_f32(w.binpar[2 * (r * G + g)]) - f16_to_f32(w.binpar[2 * (r * G + g) + 1]);
    const float* xg = x + g * gs;
    for (int64_t i = 0; i < n; ++i, ++k) {
      const float v = S * (float(w.values[k]) - Z) - cg;
      for (int t = 0; t < NT; ++t) corr[t] += v * xg[t * cols + w.pos[k]];
    }
  }
}

template <class D>
HWY_NOINLINE void DequantRow(D d, const PbllmWeight& w, int64_t r, float* HWY_RESTRICT o) {
  constexpr int64_t N = int64_t(hn::MaxLanes(D()));
  const int64_t G = w.n_groups(), gs = w.group_size;
  const uint8_t* sg = w.signs + size_t(r) * w.row_bytes();
  for (int64_t g = 0; g < G; ++g) {
    const float mu = f16_to_f32(w.binpar[2 * (r * G + g)]), a = f16_to_f32(w.binpar[2 * (r * G + g) + 1]);
    const auto hi = hn::Set(d, mu + a), lo = hn::Set(d, mu + (-a));
    for (int64_t c = g * gs; c < (g + 1) * gs; c += N)
      hn::StoreU(hn::IfThenElse(PlaneMask(d, sg, c), hi, lo), d, o + c);
  }
  const float S = w.rowpar[2 * r], Z = w.rowpar[2 * r + 1];
  int64_t k = w.row_start[r];
  for (int64_t g = 0; g < G; ++g)
    for (int64_t i = 0; i < w.counts[r * G + g]; ++i, ++k)
      o[g * gs + w.pos[k]] = S * (float(w.values[k]) - Z);
}

void DequantRows(const PbllmWeight& w, int64_t r0, int64_t nr, float* out) {
  const hn::CappedTag<float, 16> d;
  parallel_rows(
      nr, [&](int64_t i) { DequantRow(d, w, r0 + i, out + i * w.cols); }, nr * w.cols >= (int64_t(1) << 16));
}

// Rows interleaved per step, as the dual-binarization GEMV: with one or two tokens a row has only NT add
// chains, too few to hide the add latency.
template <int NT>
constexpr int kRows = NT <= 2 ? 2 : 1;

// y[t][r..r+R) for NT tokens; tot: the group totals (NT, G).
template <int NT, int R, class D>
HWY_INLINE void GemvRows(D d, const PbllmWeight& w, const float* HWY_RESTRICT x,
                         const float* HWY_RESTRICT tot, int64_t r, float* HWY_RESTRICT y) {
  constexpr size_t N = hn::MaxLanes(D());
  const size_t cols = size_t(w.cols), gs = size_t(w.group_size), G = size_t(w.n_groups()),
               rows = size_t(w.rows);
  const uint8_t* p[R];
  for (int i = 0; i < R; ++i) p[i] = w.signs + size_t(r + i) * w.row_bytes();
  hn::Vec<D> acc[R][NT];
  float sc[R][NT];
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < NT; ++t) acc[i][t] = hn::Zero(d), sc[i][t] = 0;
  for (size_t g = 0; g < G; ++g) {
    hn::Vec<D> s[R][NT];
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < NT; ++t) s[i][t] = hn::Zero(d);
    for (size_t c = g * gs; c < (g + 1) * gs; c += 32) {
#pragma GCC unroll 2
      for (int i = 0; i < R; ++i) {
        const Bits<D> b(d, p[i], c);
#pragma GCC unroll 8
        for (size_t k = 0; k < 32 / N; ++k) {
          const auto m = b.Sel(d, k);
#pragma GCC unroll 4
          for (int t = 0; t < NT; ++t) s[i][t] = AddTo(d, m, s[i][t], x + size_t(t) * cols + c + k * N);
        }
      }
    }
    for (int i = 0; i < R; ++i) {
      const uint16_t* bp = w.binpar + 2 * ((r + i) * int64_t(G) + int64_t(g));
      const float mu = f16_to_f32(bp[0]), a = f16_to_f32(bp[1]);
      const auto a2 = hn::Set(d, 2 * a);
      for (int t = 0; t < NT; ++t) {
        acc[i][t] = hn::MulAdd(a2, s[i][t], acc[i][t]);
        sc[i][t] += (mu - a) * tot[size_t(t) * G + g];
      }
    }
  }
  for (int i = 0; i < R; ++i) {
    SalientCorrection<NT>(w, x, r + i, sc[i]);
    for (int t = 0; t < NT; ++t)
      y[size_t(t) * rows + size_t(r + i)] = hn::GetLane(hn::SumOfLanes(d, acc[i][t])) + sc[i][t];
  }
}

template <int NT, class D>
void GemvChunk(D d, const PbllmWeight& w, const float* x, const float* tot, int64_t r0, int64_t r1,
               float* y) {
  constexpr int R = kRows<NT>;
  int64_t r = r0;
  for (; r + R <= r1; r += R) GemvRows<NT, R>(d, w, x, tot, r, y);
  if constexpr (R > 1)
    for (; r < r1; ++r) GemvRows<NT, 1>(d, w, x, tot, r, y);
}

void Gemv(const PbllmWeight& w, const float* x, int64_t n, float* y) {
  const hn::CappedTag<float, 16> d;
  std::vector<float> tot(size_t(n * w.n_groups()));
  pbllm_group_totals(w, x, n, tot.data());
  const int64_t chunks = (w.rows + 7) / 8;  // rows in chunks of 8: contiguous per thread
  parallel_rows(
      chunks,
      [&](int64_t ch) {
        const int64_t r0 = ch * 8, r1 = std::min(w.rows, r0 + 8);
        switch (n) {
          case 1:
            return GemvChunk<1>(d, w, x, tot.data(), r0, r1, y);
          case 2:
            return GemvChunk<2>(d, w, x, tot.data(), r0, r1, y);
          case 3:
            return GemvChunk<3>(d, w, x, tot.data(), r0, r1, y);
          default:
            return GemvChunk<4>(d, w, x, tot.data(), r0, r1, y);
        }
      },
      w.rows * w.cols >= (int64_t(1) << 16));
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "core/error.h"

namespace lowbit {

HWY_EXPORT(DequantRows);
HWY_EXPORT(Gemv);

void pbllm_dequantize_rows(const PbllmWeight& w, int64_t r0, int64_t nr, float* out) {
  check_pbllm_weight(w, "pbllm_dequantize_rows");
  if (r0 < 0 || nr < 0 || r0 + nr > w.rows)
    fail("pbllm_dequantize_rows: rows [{}, {}) outside [0, {})", r0, r0 + nr, w.rows);
  HWY_DYNAMIC_DISPATCH(DequantRows)(w, r0, nr, out);
}

void pbllm_gemv(const PbllmWeight& w, const float* x, int64_t n, float* y) {
  check_pbllm_weight(w, "pbllm_gemv");
  if (n < 1 || n > 4) fail("pbllm_gemv: {} tokens (supports 1..4)", n);
  HWY_DYNAMIC_DISPATCH(Gemv)(w, x, n, y);
}

}  // namespace lowbit
#endif  // HWY_ONCE

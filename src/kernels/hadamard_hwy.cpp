// Highway SIMD bodies for kernels/hadamard.h, compiled once per target and dispatched at run time.
//
// Each row is transformed exactly as hadamard_ref does it (formats/hadamard.h), so the two agree bitwise:
// * Butterflies at stride h·m ≥ 4 (every stride when m ∈ {12, 20, 28}, as 4 | m): (u, v) → (u + v, u − v)
//   lane by lane on runs of contiguous elements, in the reference's stage order h = 1, 2, 4, ..., two stages
//   per pass over the row (each element's additions unchanged; 2.2× faster at n = 4096 than one per pass).
// * m = 1, strides 1 and 2 (inside a vector): one pass computes both stages per vector with lane shuffles,
//   DupEven(v) + (DupOdd(v) with odd lanes' signs flipped) (then the same on 64-bit pairs): u + (−v) is
//   u − v by IEEE 754's definition of subtraction, so nothing changes but the order of memory passes.
// * Dense H_m product (m > 1): vectorized over the outputs b, acc_b += T[c][b]·x_c for c = 0..m−1 from 0,
//   the reference's order; T[c][b] = ±1 makes the product exact, so a fused MulAdd rounds exactly as the
//   reference's separate add does.
// * The scale s = (float)(1/√n) multiplies the last step's results before they are stored (the last butterfly
//   stage when m = 1, else the dense product): the same one multiply of the same value as the reference's
//   final pass.
// Rows of fewer than 4 elements (n = 1, 2) run the reference itself. Lane counts are MaxLanes (fixed-width
// targets, as lowbit's other kernels assume), at most 16.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/hadamard_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <array>
#include <cmath>
#include <cstring>

#include "core/parallel.h"
#include "formats/hadamard.h"
#include "kernels/hadamard.h"

// Once, not per target (this file is compiled once per target): the dense product's coefficient tables.
#ifndef LOWBIT_KERNELS_HADAMARD_TABLES_
#define LOWBIT_KERNELS_HADAMARD_TABLES_
namespace lowbit {
namespace {

// Columns of a table row: m ≤ 28 rounded up to a multiple of any vector width ≤ 16 lanes.
constexpr int kTablePad = 32;

// t (m, 32): t[c][b] is input c's coefficient (±1) in output b, H_m[b][c] (H_m[c][b] when transposed); 0 for
// b ≥ m, so whole vectors can be loaded past the last output.
struct DenseTable {
  alignas(64) float t[28][kTablePad];
};

const DenseTable& dense_table(int m, bool transpose) {
  static const std::array<DenseTable, 6> tables = [] {
    std::array<DenseTable, 6> out{};
    const int ms[3] = {12, 20, 28};
    for (int i = 0; i < 3; ++i)
      for (int tr = 0; tr < 2; ++tr) {
        const int8_t* H = hadamard_matrix(ms[i]);
        for (int c = 0; c < ms[i]; ++c)
          for (int b = 0; b < ms[i]; ++b)
            out[size_t(2 * i + tr)].t[c][b] = tr ? H[c * ms[i] + b] : H[b * ms[i] + c];
      }
    return out;
  }();
  return tables[size_t(2 * (m / 8 - 1) + (transpose ? 1 : 0))];  // 12, 20, 28 → 0, 1, 2
}

}  // namespace
}  // namespace lowbit
#endif

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET != HWY_SCALAR  // one-lane vectors: the dispatcher below runs the reference instead

using DF = hn::CappedTag<float, 16>;  // at most 16 lanes, so kTablePad is a multiple of the width
using DF8 = hn::CappedTag<float, 8>;
using DF4 = hn::CappedTag<float, 4>;

// f(d, j) over a run j ∈ [0, len) (len a multiple of 4): full vectors, then 8 and 4 lanes for the rest.
template <class F>
HWY_INLINE void ForRun(int64_t len, const F& f) {
  constexpr int64_t N = int64_t(hn::MaxLanes(DF()));
  int64_t j = 0;
  for (; j + N <= len; j += N) f(DF(), j);
  if constexpr (N > 8)
    for (; j + 8 <= len; j += 8) f(DF8(), j);
  if constexpr (N > 4)
    for (; j < len; j += 4) f(DF4(), j);
}

// One stage at stride h (a multiple of 4) over x (n), each block of 2h pairing its halves lane by lane:
// (u, v) → (u + v, u − v), times s when kScale.
template <bool kScale>
void Stage(float* HWY_RESTRICT x, int64_t n, int64_t h, float s) {
  for (int64_t i0 = 0; i0 < n; i0 += 2 * h) {
    float* a = x + i0;
    ForRun(h, [&](auto d, int64_t j) {
      const auto u = hn::LoadU(d, a + j), v = hn::LoadU(d, a + h + j);
      auto sum = hn::Add(u, v), dif = hn::Sub(u, v);
      if constexpr (kScale) {
        sum = hn::Mul(sum, hn::Set(d, s));
        dif = hn::Mul(dif, hn::Set(d, s));
      }
      hn::StoreU(sum, d, a + j);
      hn::StoreU(dif, d, a + h + j);
    });
  }
}

// The stages at strides h and 2h in one pass (half the loads and stores): per block of 4h, the elements
// (x0, x1, x2, x3) h apart go through stage h, (x0 ± x1), (x2 ± x3), then stage 2h on those, exactly the
// reference's additions.
template <bool kScale>
void TwoStages(float* HWY_RESTRICT x, int64_t n, int64_t h, float s) {
  for (int64_t i0 = 0; i0 < n; i0 += 4 * h) {
    float* a = x + i0;
    ForRun(h, [&](auto d, int64_t j) {
      const auto x0 = hn::LoadU(d, a + j), x1 = hn::LoadU(d, a + h + j);
      const auto x2 = hn::LoadU(d, a + 2 * h + j), x3 = hn::LoadU(d, a + 3 * h + j);
      const auto s01 = hn::Add(x0, x1), d01 = hn::Sub(x0, x1), s23 = hn::Add(x2, x3), d23 = hn::Sub(x2, x3);
      auto y0 = hn::Add(s01, s23), y1 = hn::Add(d01, d23), y2 = hn::Sub(s01, s23), y3 = hn::Sub(d01, d23);
      if constexpr (kScale) {
        const auto sv = hn::Set(d, s);
        y0 = hn::Mul(y0, sv);
        y1 = hn::Mul(y1, sv);
        y2 = hn::Mul(y2, sv);
        y3 = hn::Mul(y3, sv);
      }
      hn::StoreU(y0, d, a + j);
      hn::StoreU(y1, d, a + h + j);
      hn::StoreU(y2, d, a + 2 * h + j);
      hn::StoreU(y3, d, a + 3 * h + j);
    });
  }
}

// The stages at strides h0, 2·h0, ... < n (h0 a multiple of 4), two per pass while two remain; the last one
// scales when scale_last.
void Stages(float* HWY_RESTRICT x, int64_t n, int64_t h0, bool scale_last, float s) {
  for (int64_t h = h0; 2 * h <= n;) {
    if (4 * h <= n) {
      if (scale_last && 4 * h == n)
        TwoStages<true>(x, n, h, s);
      else
        TwoStages<false>(x, n, h, s);
      h *= 4;
    } else {
      if (scale_last)  // 2h == n: the last stage
        Stage<true>(x, n, h, s);
      else
        Stage<false>(x, n, h, s);
      h *= 2;
    }
  }
}

// The stages at strides 1 and 2 of x (n), n a multiple of d's lane count (≥ 4): per vector, lanes
// (2i, 2i+1) then pairs of lanes (4i + {0,1}, 4i + {2,3}), both inside every 128-bit block.
template <bool kScale, class D>
void Stages1And2(D d, float* HWY_RESTRICT x, int64_t n, float s) {
  const hn::RebindToUnsigned<D> du;
  const hn::Repartition<uint64_t, D> d64;
  const auto neg_odd = hn::BitCast(d, hn::OddEven(hn::Set(du, 0x80000000u), hn::Zero(du)));
  const auto neg_odd_pair =
      hn::BitCast(d, hn::OddEven(hn::Set(d64, uint64_t(0x8000000080000000ull)), hn::Zero(d64)));
  const auto sv = hn::Set(d, s);
  constexpr int64_t N = int64_t(hn::MaxLanes(D()));
  for (int64_t i = 0; i < n; i += N) {
    const auto v = hn::LoadU(d, x + i);
    const auto w = hn::Add(hn::DupEven(v), hn::Xor(hn::DupOdd(v), neg_odd));  // (v0 + v1, v0 − v1, ...)
    const auto w64 = hn::BitCast(d64, w);
    auto r =
        hn::Add(hn::BitCast(d, hn::DupEven(w64)), hn::Xor(hn::BitCast(d, hn::DupOdd(w64)), neg_odd_pair));
    if constexpr (kScale) r = hn::Mul(r, sv);
    hn::StoreU(r, d, x + i);
  }
}

// Rows a ∈ [0, A) of xa (A, m), each ← s·(table product): acc_b = Σ_c t[c][b]·x_c over V vectors of outputs
// (V·N ≥ m, the padding lanes computed and dropped). Every load of x precedes every store, so in place is
// fine; the last vector of a row is stored through a buffer when it would reach into the next row. The small
// loops are unrolled so that the accumulators stay in registers.
template <int V, int A>
HWY_INLINE void DenseRows(const DenseTable& T, float* HWY_RESTRICT xa, int64_t m, float s) {
  const DF d;
  constexpr int64_t N = int64_t(hn::MaxLanes(DF()));
  hn::Vec<DF> acc[A][V];
#pragma GCC unroll 4
  for (int i = 0; i < A; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) acc[i][v] = hn::Zero(d);
  for (int64_t c = 0; c < m; ++c) {
    hn::Vec<DF> t[V];
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) t[v] = hn::Load(d, T.t[c] + v * N);
#pragma GCC unroll 4
    for (int i = 0; i < A; ++i) {
      const auto xc = hn::Set(d, xa[i * m + c]);
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) acc[i][v] = hn::MulAdd(t[v], xc, acc[i][v]);
    }
  }
  const auto sv = hn::Set(d, s);
#pragma GCC unroll 4
  for (int i = 0; i < A; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) {
      const auto y = hn::Mul(acc[i][v], sv);
      float* out = xa + i * m + v * N;
      if ((v + 1) * N <= m) {
        hn::StoreU(y, d, out);
      } else {
        alignas(64) float buf[N];
        hn::Store(y, d, buf);
        std::memcpy(out, buf, size_t(m - v * N) * sizeof(float));
      }
    }
}

// Rows interleaved per step: A·V independent add chains hide the MulAdd latency, within the 16 vector
// registers of SSE4/AVX2 (A·V accumulators + V table vectors + one broadcast).
constexpr int dense_rows(int V) {
  if (V <= 2) return 4;
  return V <= 4 ? 2 : 1;
}

template <int V>
void DenseV(const DenseTable& T, float* x, int64_t p, int64_t m, float s) {
  constexpr int A = dense_rows(V);
  int64_t a = 0;
  for (; a + A <= p; a += A) DenseRows<V, A>(T, x + a * m, m, s);
  for (; a < p; ++a) DenseRows<V, 1>(T, x + a * m, m, s);
}

// x (p, m) ← s·x·Tᵀ row by row, for m ∈ {12, 20, 28}.
void Dense(float* x, int64_t p, int64_t m, bool transpose, float s) {
  constexpr int64_t N = int64_t(hn::MaxLanes(DF()));
  const DenseTable& T = dense_table(int(m), transpose);
  switch (m) {
    case 12:
      return DenseV<int((12 + N - 1) / N)>(T, x, p, m, s);
    case 20:
      return DenseV<int((20 + N - 1) / N)>(T, x, p, m, s);
    default:
      return DenseV<int((28 + N - 1) / N)>(T, x, p, m, s);
  }
}

// One row x (n = p·m) as hadamard_ref computes it.
void Row(float* x, int64_t n, int64_t m, bool transpose) {
  if (n < 4) return hadamard_ref(x, n, transpose);
  const float s = float(1.0 / std::sqrt(double(n)));
  const int64_t p = n / m;
  if (m == 1) {
    constexpr int64_t N = int64_t(hn::MaxLanes(DF()));
    if (n == 4) return Stages1And2<true>(DF4(), x, n, s);
    if (n >= N)
      Stages1And2<false>(DF(), x, n, s);
    else
      Stages1And2<false>(DF4(), x, n, s);
    return Stages(x, n, 4, true, s);
  }
  Stages(x, n, m, false, s);
  Dense(x, p, m, transpose, s);
}

#endif  // HWY_TARGET != HWY_SCALAR

void Rows(float* x, int64_t count, int64_t n, int64_t m, bool transpose) {
  parallel_rows(
      count,
      [&](int64_t r) {
#if HWY_TARGET == HWY_SCALAR
        hadamard_ref(x + r * n, n, transpose);
#else
        Row(x + r * n, n, m, transpose);
#endif
      },
      count > 1 && count * n >= (int64_t(1) << 15));
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "core/error.h"

namespace lowbit {

HWY_EXPORT(Rows);

void hadamard_rows(float* x, int64_t count, int64_t n, bool transpose) {
  if (count < 0) fail("hadamard_rows: {} rows", count);
  const int64_t m = hadamard_base(n);
  if (m == 0) fail("hadamard_rows: length {} is not 2^k, 12·2^k, 20·2^k or 28·2^k", n);
  HWY_DYNAMIC_DISPATCH(Rows)(x, count, n, m, transpose);
}

}  // namespace lowbit
#endif  // HWY_ONCE

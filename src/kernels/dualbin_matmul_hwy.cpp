// Highway SIMD bodies for kernels/dualbin_matmul.h, compiled once per target and dispatched at run time.
//
// A plane's N bits at a column that is a multiple of N select N lanes (LSB-first, the plane layout, is
// Highway's LoadMaskBits order).
//
// * Dequantization: out = (m1 ? α1 : 0) + (m2 ? α2 : 0), the reference dequantizer's two selects and one f32
//   addition lane by lane, so the two agree bitwise (the scales are converted with the same scalar
//   f16_to_f32, two per group).
// * GEMV: per group, s1 += (m1 ? x : 0) and s2 += (m2 ? x : 0) over the group's vectors, then
//   tot += α1·s1 + α2·s2 as two vector FMAs, and one lane reduction per row at the end: the weights are
//   never expanded, and the group's two multiplies are the only ones. x is shared by every row and read in
//   place (no permutation: the plane bits are already in column order). How the bits become lane selections
//   differs per target (see Bits below; measurements in docs/dualbin.md).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/dualbin_matmul_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/parallel.h"
#include "kernels/dualbin_matmul.h"

// Per target: PlaneMask, Bits, AddTo (the bit-plane lane selection shared with the other bit-plane kernels).
#include "kernels/bitplane-inl.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// ---------------------------------------------------------------- dequantization

template <class D>
HWY_NOINLINE void DequantRow(D d, const DualBinWeight& w, int64_t r, float* HWY_RESTRICT o) {
  constexpr int64_t N = int64_t(hn::MaxLanes(D()));
  const int64_t G = w.n_groups(), gs = w.group_size;
  const uint8_t* p1 = w.plane1 + size_t(r) * w.row_bytes();
  const uint8_t* p2 = w.plane2 + size_t(r) * w.row_bytes();
  const uint16_t* sc = w.scales + 2 * r * G;
  for (int64_t g = 0; g < G; ++g) {
    const auto a1 = hn::Set(d, f16_to_f32(sc[2 * g])), a2 = hn::Set(d, f16_to_f32(sc[2 * g + 1]));
    for (int64_t c = g * gs; c < (g + 1) * gs; c += N)
      hn::StoreU(
          hn::Add(hn::IfThenElseZero(PlaneMask(d, p1, c), a1), hn::IfThenElseZero(PlaneMask(d, p2, c), a2)),
          d, o + c);
  }
}

template <class D>
void DequantRowsD(D d, const DualBinWeight& w, int64_t r0, int64_t nr, float* out) {
  parallel_rows(
      nr, [&](int64_t i) { DequantRow(d, w, r0 + i, out + i * w.cols); }, nr * w.cols >= (int64_t(1) << 16));
}

// The widest vector (at most 16 lanes, one 16-bit mask) whose lane count divides the group, so a vector
// never straddles two groups: 16 lanes need group % 16 == 0; 8 (or the target's 4) always fit, as
// group % 8 == 0.
void DequantRows(const DualBinWeight& w, int64_t r0, int64_t nr, float* out) {
  const hn::CappedTag<float, 16> d16;
  if (w.group_size % int64_t(hn::Lanes(d16)) == 0) return DequantRowsD(d16, w, r0, nr, out);
  return DequantRowsD(hn::CappedTag<float, 8>(), w, r0, nr, out);
}

// ---------------------------------------------------------------- GEMV

// Row scales (2G fp16: α1, α2 per group) → f32, exact for every finite fp16 (the GEMV does not need to be
// bitwise anything, so the vector conversion is fine here; Highway's SSE4 emulation differs only on ∞/NaN).
template <class D>
HWY_INLINE void ScalesToF32(D d, const uint16_t* HWY_RESTRICT s16, int64_t n, float* HWY_RESTRICT out) {
  const hn::Rebind<hwy::float16_t, D> dh;
  constexpr int64_t N = int64_t(hn::MaxLanes(D()));
  const auto* h = reinterpret_cast<const hwy::float16_t*>(s16);
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::PromoteTo(d, hn::LoadU(dh, h + i)), d, out + i);
  for (; i < n; ++i) out[i] = f16_to_f32(s16[i]);
}

// Rows interleaved per step: with one or two tokens a row gives only 2·NT add chains (one per plane and
// token), too few to hide the add latency; two rows give twice as many, at no extra work per group (more
// accumulators per row would each need merging once per group).
template <int NT>
constexpr int kRows = NT <= 2 ? 2 : 1;

// y[t][r] for rows [r, r + R) and NT tokens:
//   y = Σ_g α1_g·(Σ_{c∈g, b1=1} x_c) + α2_g·(Σ_{c∈g, b2=1} x_c)
// for groups of a multiple of 32 columns, in blocks of 32 (one 32-bit word of each plane). The lane-wise
// sums are FMA'd into tot by the group's scales, and tot is reduced once per row (the tolerance of this order
// is derived in tests/kernels/dualbin_matmul_test.cpp). sbuf: 2·R·n_groups floats.
template <int NT, int R, class D>
HWY_INLINE void GemvRows(D d, const DualBinWeight& w, const float* HWY_RESTRICT x, int64_t r,
                         float* HWY_RESTRICT y, float* HWY_RESTRICT sbuf) {
  constexpr size_t N = hn::MaxLanes(D());
  const size_t cols = size_t(w.cols), gs = size_t(w.group_size), G = size_t(w.n_groups()),
               rows = size_t(w.rows);
  const uint8_t *p1[R], *p2[R];
  for (int i = 0; i < R; ++i) {
    p1[i] = w.plane1 + size_t(r + i) * w.row_bytes();
    p2[i] = w.plane2 + size_t(r + i) * w.row_bytes();
    ScalesToF32(d, w.scales + 2 * (r + i) * int64_t(G), 2 * int64_t(G), sbuf + 2 * G * size_t(i));
  }
  hn::Vec<D> tot[R][NT];
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < NT; ++t) tot[i][t] = hn::Zero(d);
  for (size_t g = 0; g < G; ++g) {
    hn::Vec<D> s1[R][NT], s2[R][NT];
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < NT; ++t) s1[i][t] = s2[i][t] = hn::Zero(d);
    for (size_t c = g * gs; c < (g + 1) * gs; c += 32) {
#pragma GCC unroll 2
      for (int i = 0; i < R; ++i) {
        const Bits<D> b1(d, p1[i], c), b2(d, p2[i], c);
#pragma GCC unroll 8
        for (size_t k = 0; k < 32 / N; ++k) {
          const auto m1 = b1.Sel(d, k), m2 = b2.Sel(d, k);
#pragma GCC unroll 4
          for (int t = 0; t < NT; ++t) {
            const float* xs = x + size_t(t) * cols + c + k * N;
            s1[i][t] = AddTo(d, m1, s1[i][t], xs);
            s2[i][t] = AddTo(d, m2, s2[i][t], xs);
          }
        }
      }
    }
    for (int i = 0; i < R; ++i) {
      const float* sc = sbuf + 2 * G * size_t(i) + 2 * g;
      const auto a1 = hn::Set(d, sc[0]), a2 = hn::Set(d, sc[1]);
      for (int t = 0; t < NT; ++t) tot[i][t] = hn::MulAdd(a2, s2[i][t], hn::MulAdd(a1, s1[i][t], tot[i][t]));
    }
  }
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < NT; ++t)
      y[size_t(t) * rows + size_t(r + i)] = hn::GetLane(hn::SumOfLanes(d, tot[i][t]));
}

// The same for any group (a multiple of 8 columns): one vector of N ≤ 8 lanes at a time, masks from
// LoadMaskBits. Groups of 8, 16 or 24 columns are unusual; this path is for completeness, not speed.
template <int NT, class D>
void GemvRowsAnyGroup(D d, const DualBinWeight& w, const float* HWY_RESTRICT x, int64_t r0, int64_t r1,
                      float* HWY_RESTRICT y, float* HWY_RESTRICT sbuf) {
  constexpr int64_t N = int64_t(hn::MaxLanes(D()));
  const int64_t cols = w.cols, gs = w.group_size, G = w.n_groups(), rows = w.rows;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* p1 = w.plane1 + size_t(r) * w.row_bytes();
    const uint8_t* p2 = w.plane2 + size_t(r) * w.row_bytes();
    ScalesToF32(d, w.scales + 2 * r * G, 2 * G, sbuf);
    hn::Vec<D> tot[NT];
    for (int t = 0; t < NT; ++t) tot[t] = hn::Zero(d);
    for (int64_t g = 0; g < G; ++g) {
      hn::Vec<D> s1[NT], s2[NT];
      for (int t = 0; t < NT; ++t) s1[t] = s2[t] = hn::Zero(d);
      for (int64_t c = g * gs; c < (g + 1) * gs; c += N) {
        const auto m1 = PlaneMask(d, p1, c), m2 = PlaneMask(d, p2, c);
        for (int t = 0; t < NT; ++t) {
          const auto xv = hn::LoadU(d, x + t * cols + c);
          s1[t] = hn::Add(s1[t], hn::IfThenElseZero(m1, xv));
          s2[t] = hn::Add(s2[t], hn::IfThenElseZero(m2, xv));
        }
      }
      const auto a1 = hn::Set(d, sbuf[2 * g]), a2 = hn::Set(d, sbuf[2 * g + 1]);
      for (int t = 0; t < NT; ++t) tot[t] = hn::MulAdd(a2, s2[t], hn::MulAdd(a1, s1[t], tot[t]));
    }
    for (int t = 0; t < NT; ++t) y[t * rows + r] = hn::GetLane(hn::SumOfLanes(d, tot[t]));
  }
}

// Rows [r0, r1) for NT tokens: the 32-column block path, R rows at a time, where the group allows it, else
// the any-group path.
template <int NT, class D>
void GemvChunk(D d, const DualBinWeight& w, const float* x, int64_t r0, int64_t r1, float* y, float* sbuf) {
  if (w.group_size % 32 != 0) return GemvRowsAnyGroup<NT>(hn::CappedTag<float, 8>(), w, x, r0, r1, y, sbuf);
  constexpr int R = kRows<NT>;
  int64_t r = r0;
  for (; r + R <= r1; r += R) GemvRows<NT, R>(d, w, x, r, y, sbuf);
  if constexpr (R > 1)
    for (; r < r1; ++r) GemvRows<NT, 1>(d, w, x, r, y, sbuf);
}

template <class D>
void GemvD(D d, const DualBinWeight& w, const float* x, int64_t n, float* y) {
  const int64_t G = w.n_groups();
  // Rows in chunks of 8 so a thread's rows are contiguous and the per-call overhead is amortized.
  const int64_t chunks = (w.rows + 7) / 8;
  parallel_rows_with(
      chunks,
      [&] {
        return std::vector<float>(static_cast<size_t>(2 * kRows<1> * G));
      },  // 2 scales per group of each row
      [&](int64_t ch, std::vector<float>& sbuf) {
        const int64_t r0 = ch * 8, r1 = std::min(w.rows, r0 + 8);
        switch (n) {
          case 1:
            GemvChunk<1>(d, w, x, r0, r1, y, sbuf.data());
            break;
          case 2:
            GemvChunk<2>(d, w, x, r0, r1, y, sbuf.data());
            break;
          case 3:
            GemvChunk<3>(d, w, x, r0, r1, y, sbuf.data());
            break;
          default:
            GemvChunk<4>(d, w, x, r0, r1, y, sbuf.data());
            break;
        }
      },
      w.rows * w.cols >= (int64_t(1) << 16));
}

void Gemv(const DualBinWeight& w, const float* x, int64_t n, float* y) {
  GemvD(hn::CappedTag<float, 16>(), w, x, n, y);
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "core/error.h"

namespace lowbit {

HWY_EXPORT(DequantRows);
HWY_EXPORT(Gemv);

void dualbin_dequantize_rows(const DualBinWeight& w, int64_t r0, int64_t nr, float* out) {
  check_dualbin_weight(w, "dualbin_dequantize_rows");
  if (r0 < 0 || nr < 0 || r0 + nr > w.rows)
    fail("dualbin_dequantize_rows: rows [{}, {}) outside [0, {})", r0, r0 + nr, w.rows);
  HWY_DYNAMIC_DISPATCH(DequantRows)(w, r0, nr, out);
}

void dualbin_gemv(const DualBinWeight& w, const float* x, int64_t n, float* y) {
  check_dualbin_weight(w, "dualbin_gemv");
  if (n < 1 || n > 4) fail("dualbin_gemv: {} tokens (supports 1..4)", n);
  HWY_DYNAMIC_DISPATCH(Gemv)(w, x, n, y);
}

}  // namespace lowbit
#endif  // HWY_ONCE

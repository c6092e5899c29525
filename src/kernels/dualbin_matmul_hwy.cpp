// Highway SIMD bodies for kernels/dualbin_matmul.h, compiled once per target and dispatched at run time.
//
// A plane's N bits at a column that is a multiple of N are one lane mask (LoadMaskBits: LSB-first, the plane
// layout). On AVX-512 that is a mask register loaded straight from the bytes, and select-then-add becomes
// one masked add; on AVX2/SSE4 Highway builds the mask with a broadcast, AND and compare.
//
// * Dequantization: out = (m1 ? α1 : 0) + (m2 ? α2 : 0), the reference dequantizer's two selects and one f32
//   addition lane by lane, so the two agree bitwise (the scales are converted with the same scalar
//   f16_to_f32, two per group).
// * GEMV: per group, s1 += (m1 ? x : 0) and s2 += (m2 ? x : 0) over the group's vectors, then
//   tot += α1·s1 + α2·s2 as two vector FMAs, and one lane reduction per row at the end: the weights are
//   never expanded, and the group's two multiplies are the only ones. x is shared by every row and read in
//   place (no permutation: the plane bits are already in column order).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/dualbin_matmul_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "kernels/dualbin_matmul.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The mask of the N plane bits of columns [c, c + N) (c a multiple of N, N in 4..16): N/8 bytes, or one
// nibble for N = 4. Read into a zeroed local first: LoadMaskBits may read up to 8 bytes, which could pass the
// end of the plane.
template <class D>
HWY_INLINE hn::Mask<D> PlaneMask(D d, const uint8_t* HWY_RESTRICT plane, int64_t c) {
  constexpr size_t N = hn::MaxLanes(D());
  static_assert(N >= 4 && N <= 16, "a mask is at most two bytes of a plane");
  alignas(8) uint8_t bits[8] = {};
  if constexpr (N >= 8)
    std::memcpy(bits, plane + c / 8, N / 8);
  else
    bits[0] = uint8_t(plane[c / 8] >> (c % 8));
  return hn::LoadMaskBits(d, bits);
}

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
#pragma omp parallel for schedule(static) if (nr * w.cols >= (int64_t(1) << 16))
  for (int64_t r = r0; r < r0 + nr; ++r) DequantRow(d, w, r, out + (r - r0) * w.cols);
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

// y[t][r] for rows [r0, r1) and NT tokens:
//   y = Σ_g α1_g·(Σ_{c∈g, b1=1} x_c) + α2_g·(Σ_{c∈g, b2=1} x_c)
// with A accumulators per plane and token (independent add chains, to hide the add latency when NT is
// small), lane-wise sums FMA'd into tot by the group's scales and one lane reduction per row (the tolerance
// of this order is derived in tests/kernels/dualbin_matmul_test.cpp).
template <int NT, int A, class D>
void GemvRows(D d, const DualBinWeight& w, const float* HWY_RESTRICT x, int64_t r0, int64_t r1,
              float* HWY_RESTRICT y, float* HWY_RESTRICT sbuf) {
  constexpr int64_t N = int64_t(hn::MaxLanes(D()));
  const int64_t cols = w.cols, gs = w.group_size, G = w.n_groups(), rows = w.rows;
  const int64_t body = gs / (A * N) * (A * N);  // columns of a group in whole steps of A vectors
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* p1 = w.plane1 + size_t(r) * w.row_bytes();
    const uint8_t* p2 = w.plane2 + size_t(r) * w.row_bytes();
    ScalesToF32(d, w.scales + 2 * r * G, 2 * G, sbuf);
    hn::Vec<D> tot[NT];
    for (int t = 0; t < NT; ++t) tot[t] = hn::Zero(d);
    for (int64_t g = 0; g < G; ++g) {
      const int64_t g0 = g * gs;
      hn::Vec<D> s1[NT][A], s2[NT][A];
      for (int t = 0; t < NT; ++t)
        for (int a = 0; a < A; ++a) s1[t][a] = s2[t][a] = hn::Zero(d);
      for (int64_t c = g0; c < g0 + body; c += A * N) {
#pragma GCC unroll 4
        for (int a = 0; a < A; ++a) {
          const auto m1 = PlaneMask(d, p1, c + a * N), m2 = PlaneMask(d, p2, c + a * N);
#pragma GCC unroll 4
          for (int t = 0; t < NT; ++t) {
            const auto xv = hn::LoadU(d, x + t * cols + c + a * N);
            s1[t][a] = hn::Add(s1[t][a], hn::IfThenElseZero(m1, xv));
            s2[t][a] = hn::Add(s2[t][a], hn::IfThenElseZero(m2, xv));
          }
        }
      }
      for (int64_t c = g0 + body; c < g0 + gs; c += N) {  // fewer than A vectors left
        const auto m1 = PlaneMask(d, p1, c), m2 = PlaneMask(d, p2, c);
        for (int t = 0; t < NT; ++t) {
          const auto xv = hn::LoadU(d, x + t * cols + c);
          s1[t][0] = hn::Add(s1[t][0], hn::IfThenElseZero(m1, xv));
          s2[t][0] = hn::Add(s2[t][0], hn::IfThenElseZero(m2, xv));
        }
      }
      const auto a1 = hn::Set(d, sbuf[2 * g]), a2 = hn::Set(d, sbuf[2 * g + 1]);
      for (int t = 0; t < NT; ++t) {
        for (int a = 1; a < A; ++a) {
          s1[t][0] = hn::Add(s1[t][0], s1[t][a]);
          s2[t][0] = hn::Add(s2[t][0], s2[t][a]);
        }
        tot[t] = hn::MulAdd(a2, s2[t][0], hn::MulAdd(a1, s1[t][0], tot[t]));
      }
    }
    for (int t = 0; t < NT; ++t) y[t * rows + r] = hn::GetLane(hn::SumOfLanes(d, tot[t]));
  }
}

template <class D>
void GemvD(D d, const DualBinWeight& w, const float* x, int64_t n, float* y) {
  const int64_t G = w.n_groups();
  // Rows in chunks of 8 so a thread's rows are contiguous and the per-call overhead is amortized.
  const int64_t chunks = (w.rows + 7) / 8;
#pragma omp parallel if (w.rows * w.cols >= (int64_t(1) << 16))
  {
    std::vector<float> sbuf(static_cast<size_t>(2 * G));
#pragma omp for schedule(static)
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const int64_t r0 = ch * 8, r1 = std::min(w.rows, r0 + 8);
      switch (n) {
        case 1:
          GemvRows<1, 4>(d, w, x, r0, r1, y, sbuf.data());
          break;
        case 2:
          GemvRows<2, 2>(d, w, x, r0, r1, y, sbuf.data());
          break;
        case 3:
          GemvRows<3, 1>(d, w, x, r0, r1, y, sbuf.data());
          break;
        default:
          GemvRows<4, 1>(d, w, x, r0, r1, y, sbuf.data());
          break;
      }
    }
  }
}

void Gemv(const DualBinWeight& w, const float* x, int64_t n, float* y) {
  const hn::CappedTag<float, 16> d16;
  if (w.group_size % int64_t(hn::Lanes(d16)) == 0) return GemvD(d16, w, x, n, y);
  return GemvD(hn::CappedTag<float, 8>(), w, x, n, y);
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

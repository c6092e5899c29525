// Highway SIMD bodies for kernels/affine_matmul.h, compiled once per target and dispatched at run time.
//
// Two decoders of the packed LSB-first code stream (formats/affine.h; kernels/packed_codes-inl.h):
//
// * Planar (2, 3, 4, 8 bits; the decode GEMV). A block of P·N codes (N f32 lanes, P = 4 planes, 8 for 3 bits)
//   is unpacked with whole-vector shifts and masks into P vectors whose lanes hold codes in a fixed permuted
//   order: e.g. 4 bits, N bytes zero-extended to N int32 lanes → the low nibbles are the even codes and the
//   high nibbles the odd ones. Since x is shared by every row, x is permuted once per call into that same
//   order (PermuteX), so the inner loop is just convert + FMA. 3 bits: lane i assembles the 24-bit unit at
//   byte 3i (8 codes in 3 bytes) with two cross-lane permutes, plane j is (unit >> 3j) & 7.
// * Natural (any width; affine_dequantize_rows and the act-order / 5-7-bit GEMV). A chunk of 8 or 16 codes
//   starting at a multiple of 8 codes (a byte boundary) lies in at most 16 bytes; each lane picks its two
//   bytes with a byte shuffle, then a per-lane variable shift and mask extract the code, in column order.
//
// Codes before the first aligned block of a group and after its last full block (ragged shapes, odd group
// sizes) are decoded one at a time with packed_code. Reads never go past the current row: the last block of a
// row is copied to a zero-padded stack buffer when a vector load would overrun it.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/affine_matmul_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "core/parallel.h"
#include "kernels/affine_matmul.h"

// Per target: ScalesToF32, NaturalTables, DecodeNatural, kPlanes, kAlign, PlaneColumn, DecodePlanar.
#include "kernels/packed_codes-inl.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// ---------------------------------------------------------------- shared helpers

// Codes [g0, g1) of one group: [g0, head_end) and [tail_begin, g1) go one at a time, nblocks blocks of B
// codes start at head_end (the first multiple of `align` codes, where a block starts on a byte boundary).
struct GroupPlan {
  int64_t head_end, nblocks, tail_begin;
};
// The plans of all G groups of size gs, computed once per call (keeps integer divisions out of the row
// loops).
HWY_INLINE std::vector<GroupPlan> PlanGroups(int64_t gs, int64_t G, int64_t align, int64_t B) {
  std::vector<GroupPlan> plans(static_cast<size_t>(G));
  for (int64_t g = 0; g < G; ++g) {
    const int64_t g0 = g * gs, g1 = g0 + gs;
    const int64_t h = std::min(g1, (g0 + align - 1) / align * align);
    const int64_t nb = (g1 - h) / B;
    plans[size_t(g)] = {h, nb, h + nb * B};
  }
  return plans;
}

// Σ a[i]·b[i] with four accumulators.
template <class D>
HWY_INLINE float Dot(D d, const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, int64_t n) {
  const int64_t N = int64_t(hn::Lanes(d));
  auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    a0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), a0);
    a1 = hn::MulAdd(hn::LoadU(d, a + i + N), hn::LoadU(d, b + i + N), a1);
    a2 = hn::MulAdd(hn::LoadU(d, a + i + 2 * N), hn::LoadU(d, b + i + 2 * N), a2);
    a3 = hn::MulAdd(hn::LoadU(d, a + i + 3 * N), hn::LoadU(d, b + i + 3 * N), a3);
  }
  for (; i + N <= n; i += N) a0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), a0);
  float s = hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// ---------------------------------------------------------------- natural-order decoder

// Ŵ[r] (cols) into out. sbuf, zbuf: n_groups() floats of scratch. Each value is s·(q − z) in f32 exactly as
// affine_dequantize_rows_scalar computes it (one rounding, which is in fact exact: an fp16 scale has 11
// significant bits and |q − z| < 2^9, so the product fits in 24 bits), so the two agree bitwise.
template <class D>
void DequantRow(D d, const AffineWeight& w, const GroupPlan* plans, int64_t r, float* HWY_RESTRICT out,
                float* HWY_RESTRICT sbuf, float* HWY_RESTRICT zbuf) {
  constexpr size_t N = hn::MaxLanes(D());
  constexpr int64_t K = N < 8 ? 8 : int64_t(N);
  const int64_t G = w.n_groups(), cols = w.cols;
  const int bits = w.bits;
  const size_t rb = w.row_bytes();
  const uint8_t* row = w.codes + size_t(r) * rb;
  const uint8_t* zr = w.zeros + r * G;
  ScalesToF32(d, w.scales + r * G, G, sbuf);
  const NaturalTables tab(bits);
  hn::Vec<D> q[K / N];
  if (w.g_idx) {
    // Act-order: each column has its own group; gather its scale and zero-point.
    const hn::RebindToSigned<D> di;
    for (int64_t g = 0; g < G; ++g) zbuf[g] = float(zr[g]);
    int64_t c = 0;
    for (; c + K <= cols; c += K) {
      DecodeNatural(d, row, rb, bits, c, tab, q);
      for (size_t k = 0; k < K / N; ++k) {
        const auto gi = hn::LoadU(di, w.g_idx + c + int64_t(k * N));
        const auto s = hn::GatherIndex(d, sbuf, gi), z = hn::GatherIndex(d, zbuf, gi);
        hn::StoreU(hn::Mul(s, hn::Sub(q[k], z)), d, out + c + int64_t(k * N));
      }
    }
    for (; c < cols; ++c) {
      const int32_t g = w.g_idx[c];
      out[c] = sbuf[g] * (float(packed_code(row, bits, c)) - zbuf[g]);
    }
    return;
  }
  const int64_t gs = w.group_size;
  for (int64_t g = 0; g < G; ++g) {
    const float s = sbuf[g], z = float(zr[g]);
    const auto vs = hn::Set(d, s), vz = hn::Set(d, z);
    const GroupPlan& p = plans[g];
    for (int64_t c = g * gs; c < p.head_end; ++c) out[c] = s * (float(packed_code(row, bits, c)) - z);
    for (int64_t b = 0; b < p.nblocks; ++b) {
      const int64_t c = p.head_end + b * K;
      DecodeNatural(d, row, rb, bits, c, tab, q);
      for (size_t k = 0; k < K / N; ++k)
        hn::StoreU(hn::Mul(vs, hn::Sub(q[k], vz)), d, out + c + int64_t(k * N));
    }
    for (int64_t c = p.tail_begin; c < (g + 1) * gs; ++c) out[c] = s * (float(packed_code(row, bits, c)) - z);
  }
}

// Plans for DequantRow: blocks of max(N, 8) codes starting on multiples of 8 codes.
template <class D>
std::vector<GroupPlan> NaturalPlans(D, const AffineWeight& w) {
  constexpr int64_t N = int64_t(hn::MaxLanes(D()));
  return PlanGroups(w.group_size, w.n_groups(), 8, N < 8 ? 8 : N);
}

void DequantRows(const AffineWeight& w, int64_t r0, int64_t nr, float* out) {
  const hn::ScalableTag<float> d;
  const std::vector<GroupPlan> plans = NaturalPlans(d, w);
  const size_t G = static_cast<size_t>(w.n_groups());
  parallel_rows_with(
      nr,
      [&] {
        return std::array{std::vector<float>(G), std::vector<float>(G)};
      },  // scales, zeros
      [&](int64_t i, auto& s) {
        DequantRow(d, w, plans.data(), r0 + i, out + i * w.cols, s[0].data(), s[1].data());
      },
      nr * w.cols >= (int64_t(1) << 16));
}

// ---------------------------------------------------------------- planar decoder (decode GEMV)

// xp (n, cols): x with every planar block of every group reordered to the planes' lane order (head and tail
// codes keep their place); sx (n, G): Σ x over each group, summed in double and rounded once.
template <int kBits, class D>
void PermuteX(D d, const AffineWeight& w, const GroupPlan* plans, const float* x, int64_t n, float* xp,
              float* sx) {
  constexpr int P = kPlanes<kBits>;
  const int64_t N = int64_t(hn::Lanes(d)), B = P * N, cols = w.cols, gs = w.group_size, G = w.n_groups();
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * cols;
    float* xpt = xp + t * cols;
    std::memcpy(xpt, xt, size_t(cols) * sizeof(float));
    for (int64_t g = 0; g < G; ++g) {
      const GroupPlan& p = plans[g];
      for (int64_t b = 0; b < p.nblocks; ++b) {
        const int64_t c0 = p.head_end + b * B;
        for (int j = 0; j < P; ++j)
          for (int64_t i = 0; i < N; ++i) xpt[c0 + j * N + i] = xt[c0 + PlaneColumn<kBits>(j, i, N)];
      }
      double s = 0;
      for (int64_t c = g * gs; c < (g + 1) * gs; ++c) s += xt[c];
      sx[t * G + g] = float(s);
    }
  }
}

// y[t][r] for rows [r0, r1) and NT tokens, in the fused form
//   y = Σ_g S_g·(Σ_{c∈g} q_c·x_c) − Σ_g S_g·Z_g·(Σ_{c∈g} x_c),
// so the inner loop is code × x FMA and the zero-point costs one multiply per group (the tolerance this
// reassociation needs is derived in tests/kernels/quantized_test.cpp).
template <int kBits, int NT, class D>
void GemvPlanarRows(D d, const AffineWeight& w, const GroupPlan* plans, const float* HWY_RESTRICT xp,
                    const float* HWY_RESTRICT sx, int64_t r0, int64_t r1, float* HWY_RESTRICT y,
                    float* HWY_RESTRICT sbuf) {
  constexpr int P = kPlanes<kBits>;
  constexpr int A = NT <= 2 ? 4 : 2;  // independent accumulators per token (hides FMA latency)
  constexpr size_t N = hn::MaxLanes(D());
  const int64_t B = P * int64_t(N), cols = w.cols, gs = w.group_size, G = w.n_groups(), rows = w.rows;
  const size_t rb = w.row_bytes();
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + size_t(r) * rb;
    const uint8_t* zr = w.zeros + r * G;
    ScalesToF32(d, w.scales + r * G, G, sbuf);
    hn::Vec<D> tot[NT];
    float sc[NT];
    for (int t = 0; t < NT; ++t) tot[t] = hn::Zero(d), sc[t] = 0;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t g0 = g * gs, g1 = g0 + gs;
      const GroupPlan& p = plans[g];
      float part[NT] = {};  // Σ q·x over the head and tail codes
      for (int64_t c = g0; c < p.head_end; ++c) {
        const float q = float(packed_code(row, kBits, c));
        for (int t = 0; t < NT; ++t) part[t] += q * xp[t * cols + c];
      }
      hn::Vec<D> acc[NT][A];
      for (int t = 0; t < NT; ++t)
        for (int a = 0; a < A; ++a) acc[t][a] = hn::Zero(d);
      for (int64_t b = 0; b < p.nblocks; ++b) {
        const int64_t c = p.head_end + b * B;
        const uint8_t* src = row + size_t(c) * kBits / 8;
        alignas(64) uint8_t tmp[4 * 16];
        if (kBits == 3 && size_t(c) * 3 / 8 + 4 * N > rb) {  // the 4N-byte load would pass the row end
          std::memcpy(tmp, src, 3 * N);
          std::memset(tmp + 3 * N, 0, N);
          src = tmp;
        }
        hn::Vec<D> q[P];
        DecodePlanar<kBits>(d, src, q);
#pragma GCC unroll 8
        for (int j = 0; j < P; ++j)
#pragma GCC unroll 4
          for (int t = 0; t < NT; ++t)
            acc[t][j % A] = hn::MulAdd(q[j], hn::LoadU(d, xp + t * cols + c + j * int64_t(N)), acc[t][j % A]);
      }
      for (int64_t c = p.tail_begin; c < g1; ++c) {
        const float q = float(packed_code(row, kBits, c));
        for (int t = 0; t < NT; ++t) part[t] += q * xp[t * cols + c];
      }
      const float s = sbuf[g], z = float(zr[g]);
      const auto vs = hn::Set(d, s);
      for (int t = 0; t < NT; ++t) {
        auto a = acc[t][0];
        for (int k = 1; k < A; ++k) a = hn::Add(a, acc[t][k]);
        tot[t] = hn::MulAdd(vs, a, tot[t]);
        sc[t] += s * (part[t] - z * sx[t * G + g]);
      }
    }
    for (int t = 0; t < NT; ++t) y[t * rows + r] = hn::GetLane(hn::SumOfLanes(d, tot[t])) + sc[t];
  }
}

template <int kBits, class D>
void GemvPlanar(D d, const AffineWeight& w, const float* x, int64_t n, float* y) {
  const int64_t G = w.n_groups();
  const std::vector<GroupPlan> plans =
      PlanGroups(w.group_size, G, kAlign<kBits>, kPlanes<kBits> * int64_t(hn::Lanes(d)));
  std::vector<float> xp(size_t(n * w.cols)), sx(size_t(n * G));
  PermuteX<kBits>(d, w, plans.data(), x, n, xp.data(), sx.data());
  // Rows in chunks of 8 so a thread's rows are contiguous and the per-call overhead is amortized.
  const int64_t chunks = (w.rows + 7) / 8;
  parallel_rows_with(
      chunks, [&] { return std::vector<float>(static_cast<size_t>(G)); },
      [&](int64_t ch, std::vector<float>& sbuf) {
        const int64_t r0 = ch * 8, r1 = std::min(w.rows, r0 + 8);
        switch (n) {
          case 1:
            GemvPlanarRows<kBits, 1>(d, w, plans.data(), xp.data(), sx.data(), r0, r1, y, sbuf.data());
            break;
          case 2:
            GemvPlanarRows<kBits, 2>(d, w, plans.data(), xp.data(), sx.data(), r0, r1, y, sbuf.data());
            break;
          case 3:
            GemvPlanarRows<kBits, 3>(d, w, plans.data(), xp.data(), sx.data(), r0, r1, y, sbuf.data());
            break;
          default:
            GemvPlanarRows<kBits, 4>(d, w, plans.data(), xp.data(), sx.data(), r0, r1, y, sbuf.data());
            break;
        }
      },
      w.rows * w.cols >= (int64_t(1) << 16));
}

// Picks the vector width for a group size: the widest whose block (P·N codes) tiles a group exactly, else
// the widest that fits in one, else the narrowest (then most codes take the one-at-a-time path).
template <int kBits>
void GemvPlanarDispatch(const AffineWeight& w, const float* x, int64_t n, float* y) {
  constexpr int P = kPlanes<kBits>;
  const hn::CappedTag<float, 16> d16;
  const hn::CappedTag<float, 8> d8;
  const hn::CappedTag<float, 4> d4;
  const int64_t gs = w.group_size, B16 = P * int64_t(hn::Lanes(d16)), B8 = P * int64_t(hn::Lanes(d8));
  if (gs % B16 == 0) return GemvPlanar<kBits>(d16, w, x, n, y);
  if (gs % B8 == 0) return GemvPlanar<kBits>(d8, w, x, n, y);
  if (gs >= B16) return GemvPlanar<kBits>(d16, w, x, n, y);
  if (gs >= B8) return GemvPlanar<kBits>(d8, w, x, n, y);
  return GemvPlanar<kBits>(d4, w, x, n, y);
}

// Act-order or 5..7 bits: dequantize each row (SIMD, exact) into scratch and dot it with every token.
void GemvDequantDot(const AffineWeight& w, const float* x, int64_t n, float* y) {
  const hn::ScalableTag<float> d;
  const int64_t G = w.n_groups(), cols = w.cols;
  const std::vector<GroupPlan> plans = NaturalPlans(d, w);
  parallel_rows_with(
      w.rows,
      [&] {  // the row, its scales, its zeros
        return std::array{std::vector<float>(static_cast<size_t>(cols)),
                          std::vector<float>(static_cast<size_t>(G)),
                          std::vector<float>(static_cast<size_t>(G))};
      },
      [&](int64_t r, auto& s) {
        DequantRow(d, w, plans.data(), r, s[0].data(), s[1].data(), s[2].data());
        for (int64_t t = 0; t < n; ++t) y[t * w.rows + r] = Dot(d, s[0].data(), x + t * cols, cols);
      },
      w.rows * w.cols >= (int64_t(1) << 16));
}

void QuantGemv(const AffineWeight& w, const float* x, int64_t n, float* y) {
  if (w.g_idx) return GemvDequantDot(w, x, n, y);
  switch (w.bits) {
    case 2:
      return GemvPlanarDispatch<2>(w, x, n, y);
    case 3:
      return GemvPlanarDispatch<3>(w, x, n, y);
    case 4:
      return GemvPlanarDispatch<4>(w, x, n, y);
    case 8:
      return GemvPlanarDispatch<8>(w, x, n, y);
    default:
      return GemvDequantDot(w, x, n, y);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "core/error.h"

namespace lowbit {

HWY_EXPORT(DequantRows);
HWY_EXPORT(QuantGemv);

void affine_dequantize_rows(const AffineWeight& w, int64_t r0, int64_t nr, float* out) {
  check_affine_weight(w, "affine_dequantize_rows");
  if (r0 < 0 || nr < 0 || r0 + nr > w.rows)
    fail("affine_dequantize_rows: rows [{}, {}) outside [0, {})", r0, r0 + nr, w.rows);
  HWY_DYNAMIC_DISPATCH(DequantRows)(w, r0, nr, out);
}

void affine_gemv(const AffineWeight& w, const float* x, int64_t n, float* y) {
  check_affine_weight(w, "affine_gemv");
  if (n < 1 || n > 4) fail("affine_gemv: {} tokens (supports 1..4)", n);
  HWY_DYNAMIC_DISPATCH(QuantGemv)(w, x, n, y);
}

}  // namespace lowbit
#endif  // HWY_ONCE

// Highway SIMD bodies for kernels/billm_matmul.h, compiled once per target and dispatched at run time.
//
// Both kernels work on blocks of 32 columns (one 32-bit word of plane A, of plane B and of the salient
// columns; group_size is a multiple of 32) and pick each lane's value from the (row, block)'s 8 levels,
// computed once per (row, block) by the scalar billm_levels (the GEMV: billm_levels_f32 on the row's
// parameters converted by vector, the same values) and broadcast:
//   v = B ? (A ? L3 : L2) : (A ? L1 : L0)                          three selects
//   v = S ? (B ? (A ? L7 : L6) : (A ? L5 : L4)) : v                 four more, skipped in a block of 32
//                                                                  columns without a salient column
// so every lane holds exactly the reference dequantizer's value. The bits become selections as in the other
// bit-plane kernels (kernels/bitplane-inl.h: Bits/Sel decode, Pick blends): on AVX-512 a vptestmd of the
// broadcast word per mask register (loading mask registers with kmovw was 2× slower on Zen 4), on AVX2 a
// variable shift into the sign bit and vblendvps, elsewhere the byte table. Measured single-threaded on
// 8192×2048 g128 (Zen 4, AVX3, n = 1): 1.3 ms with no salient column, 2.0 ms with 10 random salient columns
// per block (60 of 64 blocks of 32 columns take the salient selects), 3.4 ms for PB-LLM's GEMV.
// * Dequantization: v stored.
// * GEMV: acc_t += v·x_t, one FMA chain per (row, token), two rows interleaved for one or two tokens (as the
//   PB-LLM and dual-binarization GEMVs: one chain per token is too few to hide the FMA latency), one lane
//   reduction per row.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/billm_matmul_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/parallel.h"
#include "kernels/billm_matmul.h"

// Per target: Bits, Pick.
#include "kernels/bitplane-inl.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The salient bits of columns [c, c + 32): zero for most blocks of 32 columns.
HWY_INLINE uint32_t SalientWord(const BillmWeight& w, size_t c) {
  uint32_t s;
  std::memcpy(&s, w.salient + c / 8, 4);
  return s;
}

// The values of vector k of a 32-column block: a, b (and s) the Sel of its bits, lv the row's 8 levels.
template <bool kSalient, class D, class M>
HWY_INLINE hn::Vec<D> Value(D d, M a, M b, M s, const float* HWY_RESTRICT lv) {
  auto v = Pick(d, b, Pick(d, a, hn::Set(d, lv[3]), hn::Set(d, lv[2])),
                Pick(d, a, hn::Set(d, lv[1]), hn::Set(d, lv[0])));
  if constexpr (kSalient) {
    const auto vs = Pick(d, b, Pick(d, a, hn::Set(d, lv[7]), hn::Set(d, lv[6])),
                         Pick(d, a, hn::Set(d, lv[5]), hn::Set(d, lv[4])));
    v = Pick(d, s, vs, v);
  }
  return v;
}

// ---------------------------------------------------------------- dequantization

template <bool kSalient, class D>
HWY_INLINE void DequantBlock32(D d, const Bits<D>& ba, const Bits<D>& bb, const Bits<D>& bs,
                               const float* HWY_RESTRICT lv, float* HWY_RESTRICT o) {
  constexpr size_t N = hn::MaxLanes(D());
  for (size_t k = 0; k < 32 / N; ++k) {
    const auto a = ba.Sel(d, k);
    hn::StoreU(Value<kSalient>(d, a, bb.Sel(d, k), kSalient ? bs.Sel(d, k) : a, lv), d, o + k * N);
  }
}

template <class D>
HWY_NOINLINE void DequantRow(D d, const BillmWeight& w, int64_t r, float* HWY_RESTRICT o) {
  const size_t G = size_t(w.n_groups()), gs = size_t(w.group_size);
  const uint8_t* pa = w.signs + size_t(r) * w.row_bytes();
  const uint8_t* pb = w.plane2 + size_t(r) * w.row_bytes();
  for (size_t g = 0; g < G; ++g) {
    float lv[8];
    billm_levels(w.params(r, int64_t(g)), lv);
    for (size_t c = g * gs; c < (g + 1) * gs; c += 32) {
      const Bits<D> ba(d, pa, c), bb(d, pb, c), bs(d, w.salient, c);
      if (SalientWord(w, c) == 0)
        DequantBlock32<false>(d, ba, bb, bs, lv, o + c);
      else
        DequantBlock32<true>(d, ba, bb, bs, lv, o + c);
    }
  }
}

void DequantRows(const BillmWeight& w, int64_t r0, int64_t nr, float* out) {
  const hn::CappedTag<float, 16> d;
  parallel_rows(
      nr, [&](int64_t i) { DequantRow(d, w, r0 + i, out + i * w.cols); }, nr * w.cols >= (int64_t(1) << 16));
}

// ---------------------------------------------------------------- GEMV

// A row's 7·G fp16 parameters → f32, exact for every finite fp16 (the loader and make_billm reject the
// others; Highway's SSE4 emulation differs from f16_to_f32 only on ∞/NaN), so billm_levels_f32 on them gives
// billm_levels' values; the scalar conversion, 7 calls per (row, block), took a fifth of the GEMV's time.
template <class D>
HWY_INLINE void ParamsToF32(D d, const uint16_t* HWY_RESTRICT p16, size_t n, float* HWY_RESTRICT out) {
  const hn::Rebind<hwy::float16_t, D> dh;
  constexpr size_t N = hn::MaxLanes(D());
  const auto* h = reinterpret_cast<const hwy::float16_t*>(p16);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::PromoteTo(d, hn::LoadU(dh, h + i)), d, out + i);
  for (; i < n; ++i) out[i] = f16_to_f32(p16[i]);
}

// Rows interleaved per step: with one or two tokens a row has only NT FMA chains, too few to hide the FMA
// latency; two rows give twice as many.
template <int NT>
constexpr int kRows = NT <= 2 ? 2 : 1;

// acc[i][t] += v·x_t over the 32 columns from c of rows i < R (lv: their 8 levels each).
template <bool kSalient, int NT, int R, class D>
HWY_INLINE void GemvBlock32(D d, const uint8_t* const* pa, const uint8_t* const* pb, const Bits<D>& bs,
                            const float (*lv)[8], const float* HWY_RESTRICT x, size_t cols, size_t c,
                            hn::Vec<D> (&acc)[R][NT]) {
  constexpr size_t N = hn::MaxLanes(D());
#pragma GCC unroll 2
  for (int i = 0; i < R; ++i) {
    const Bits<D> ba(d, pa[i], c), bb(d, pb[i], c);
#pragma GCC unroll 8
    for (size_t k = 0; k < 32 / N; ++k) {
      const auto a = ba.Sel(d, k);
      const auto v = Value<kSalient>(d, a, bb.Sel(d, k), kSalient ? bs.Sel(d, k) : a, lv[i]);
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t)
        acc[i][t] = hn::MulAdd(v, hn::LoadU(d, x + size_t(t) * cols + c + k * N), acc[i][t]);
    }
  }
}

// y[t][r..r+R) for NT tokens; pbuf: R·7·G floats.
template <int NT, int R, class D>
HWY_INLINE void GemvRows(D d, const BillmWeight& w, const float* HWY_RESTRICT x, int64_t r,
                         float* HWY_RESTRICT y, float* HWY_RESTRICT pbuf) {
  const size_t cols = size_t(w.cols), gs = size_t(w.group_size), G = size_t(w.n_groups()),
               rows = size_t(w.rows), np = size_t(kBillmPar) * G;
  const uint8_t *pa[R], *pb[R];
  for (int i = 0; i < R; ++i) {
    pa[i] = w.signs + size_t(r + i) * w.row_bytes();
    pb[i] = w.plane2 + size_t(r + i) * w.row_bytes();
    ParamsToF32(d, w.params(r + i, 0), np, pbuf + size_t(i) * np);
  }
  hn::Vec<D> acc[R][NT];
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < NT; ++t) acc[i][t] = hn::Zero(d);
  for (size_t g = 0; g < G; ++g) {
    float lv[R][8];
    for (int i = 0; i < R; ++i) billm_levels_f32(pbuf + size_t(i) * np + kBillmPar * g, lv[i]);
    for (size_t c = g * gs; c < (g + 1) * gs; c += 32) {
      const Bits<D> bs(d, w.salient, c);
      if (SalientWord(w, c) == 0)
        GemvBlock32<false, NT, R>(d, pa, pb, bs, lv, x, cols, c, acc);
      else
        GemvBlock32<true, NT, R>(d, pa, pb, bs, lv, x, cols, c, acc);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < NT; ++t)
      y[size_t(t) * rows + size_t(r + i)] = hn::GetLane(hn::SumOfLanes(d, acc[i][t]));
}

template <int NT, class D>
void GemvChunk(D d, const BillmWeight& w, const float* x, int64_t r0, int64_t r1, float* y, float* pbuf) {
  constexpr int R = kRows<NT>;
  int64_t r = r0;
  for (; r + R <= r1; r += R) GemvRows<NT, R>(d, w, x, r, y, pbuf);
  if constexpr (R > 1)
    for (; r < r1; ++r) GemvRows<NT, 1>(d, w, x, r, y, pbuf);
}

void Gemv(const BillmWeight& w, const float* x, int64_t n, float* y) {
  const hn::CappedTag<float, 16> d;
  const int64_t chunks = (w.rows + 7) / 8;  // rows in chunks of 8: contiguous per thread
  parallel_rows_with(
      chunks, [&] { return std::vector<float>(size_t(kRows<1> * kBillmPar * w.n_groups())); },
      [&](int64_t ch, std::vector<float>& pbuf) {
        const int64_t r0 = ch * 8, r1 = std::min(w.rows, r0 + 8);
        switch (n) {
          case 1:
            return GemvChunk<1>(d, w, x, r0, r1, y, pbuf.data());
          case 2:
            return GemvChunk<2>(d, w, x, r0, r1, y, pbuf.data());
          case 3:
            return GemvChunk<3>(d, w, x, r0, r1, y, pbuf.data());
          default:
            return GemvChunk<4>(d, w, x, r0, r1, y, pbuf.data());
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

void billm_dequantize_rows(const BillmWeight& w, int64_t r0, int64_t nr, float* out) {
  check_billm_weight(w, "billm_dequantize_rows");
  if (r0 < 0 || nr < 0 || r0 + nr > w.rows)
    fail("billm_dequantize_rows: rows [{}, {}) outside [0, {})", r0, r0 + nr, w.rows);
  HWY_DYNAMIC_DISPATCH(DequantRows)(w, r0, nr, out);
}

void billm_gemv(const BillmWeight& w, const float* x, int64_t n, float* y) {
  check_billm_weight(w, "billm_gemv");
  if (n < 1 || n > 4) fail("billm_gemv: {} tokens (supports 1..4)", n);
  HWY_DYNAMIC_DISPATCH(Gemv)(w, x, n, y);
}

}  // namespace lowbit
#endif  // HWY_ONCE

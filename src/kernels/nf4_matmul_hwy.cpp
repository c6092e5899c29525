// Highway SIMD bodies for kernels/nf4_matmul.h, compiled once per target and dispatched at run time.
//
// A block of 64 weights is 32 bytes of codes and one scale A_b (and with ICQ one shift τ_b), so the block can
// only take the 16 values T[k] = NF4[k]·A_b (+ τ_b). Dequantization builds T once per block, rounded as the
// reference dequantizer's table (Nf4Weight::block_values) is, so the two agree bitwise, and turns codes into
// weights with a lane table lookup: one TableLookupLanes on 16-lane targets, else 16/N lookups merged by the
// code's high bits. The GEMV factors the block's scale out instead (y = Σ_b A_b·Σ NF4[q]·x + Σ_b τ_b·Σ x), so
// its table is the 16 NF4 values, loaded once per call.
//
// N bytes widened to N int32 lanes hold 2N codes: the high nibbles are the even columns and the low nibbles
// the odd ones (bitsandbytes' packing). Dequantization writes the two vectors interleaved (StoreInterleaved2,
// so the output is in column order and bitwise equal to the reference); the GEMV instead permutes x once per
// call into the same even/odd order, so its inner loop is lookup + FMA.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/nf4_matmul_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <array>
#include <vector>

#include "core/parallel.h"
#include "kernels/nf4_matmul.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// At most 16 lanes: the whole table then fits in one vector.
using DF = hn::CappedTag<float, 16>;

// T[k] = NF4[k]·a (+ tau) as 16/N vectors, rounded as Nf4Weight::block_values rounds them: without τ one
// product, which a vector multiply rounds exactly as the scalar one; with τ, `products` holds the 16 products
// from the out-of-line nf4_scaled_values, so the compiler cannot fuse them with the sum into an FMA.
template <class D>
HWY_INLINE void BlockTable(D d, float a, const float* products, const float* tau, hn::Vec<D>* tab) {
  constexpr size_t N = hn::MaxLanes(D());
  for (size_t i = 0; i < 16 / N; ++i)
    tab[i] = tau ? hn::Add(hn::LoadU(d, products + i * N), hn::Set(d, *tau))
                 : hn::Mul(hn::LoadU(d, kNf4Values + i * N), hn::Set(d, a));
}

// T[q] for int32 codes q in [0, 16).
template <class D>
HWY_INLINE hn::Vec<D> Lookup16(D d, const hn::Vec<D>* tab, hn::Vec<hn::RebindToSigned<D>> q) {
  constexpr size_t N = hn::MaxLanes(D());
  if constexpr (N >= 16) {
    return hn::TableLookupLanes(tab[0], hn::IndicesFromVec(d, q));
  } else {
    const hn::RebindToSigned<D> di;
    const auto idx = hn::IndicesFromVec(d, hn::And(q, hn::Set(di, int32_t(N - 1))));
    auto r = hn::TableLookupLanes(tab[0], idx);
    for (size_t t = 1; t < 16 / N; ++t)
      r = hn::IfThenElse(hn::RebindMask(d, hn::Gt(q, hn::Set(di, int32_t(t * N) - 1))),
                         hn::TableLookupLanes(tab[t], idx), r);
    return r;
  }
}

// The codes of N bytes at p: even columns (high nibbles) and odd columns (low nibbles) as int32 lanes.
template <class D>
HWY_INLINE void DecodeBytes(D d, const uint8_t* HWY_RESTRICT p, hn::Vec<hn::RebindToSigned<D>>& even,
                            hn::Vec<hn::RebindToSigned<D>>& odd) {
  const hn::RebindToSigned<D> di;
  const hn::Rebind<uint8_t, D> du8;
  const auto v = hn::PromoteTo(di, hn::LoadU(du8, p));
  even = hn::ShiftRight<4>(v);
  odd = hn::And(v, hn::Set(di, 15));
}

// Row r of Ŵ into o (cols). Its own function, not the body of DequantRows' OpenMP loop: clang outlines that
// body into a function without this target's attributes, and the always-inline vector helpers cannot be
// compiled there (clang 14 crashes: "Do not know how to split the result of this operator").
HWY_NOINLINE void DequantRow(const Nf4Weight& w, int64_t r, float* o, float* scale, float* tau,
                             float* products) {
  const DF d;
  constexpr size_t N = hn::MaxLanes(DF());
  const int64_t per_row = w.cols / kNf4Block;
  const bool icq = w.icq();
  const uint8_t* row = w.codes + size_t(r) * w.row_bytes();
  w.block_scales(r * per_row, per_row, scale, tau);
  if (icq) nf4_scaled_values(scale, per_row, products);
  hn::Vec<DF> tab[16 / N];
  for (int64_t j = 0; j < per_row; ++j) {
    BlockTable(d, scale[size_t(j)], icq ? &products[size_t(16 * j)] : nullptr,
               icq ? &tau[size_t(j)] : nullptr, tab);
    for (int64_t k = 0; k < kNf4Block / 2; k += int64_t(N)) {
      hn::Vec<hn::RebindToSigned<DF>> even, odd;
      DecodeBytes(d, row + j * kNf4Block / 2 + k, even, odd);
      hn::StoreInterleaved2(Lookup16(d, tab, even), Lookup16(d, tab, odd), d, o + j * kNf4Block + 2 * k);
    }
  }
}

void DequantRows(const Nf4Weight& w, int64_t r0, int64_t nr, float* out) {
  const int64_t cols = w.cols, per_row = cols / kNf4Block;
  const bool icq = w.icq();
  parallel_rows_with(
      nr,
      [&] {  // scales, ICQ shifts, ICQ products
        return std::array{std::vector<float>(static_cast<size_t>(per_row)),
                          std::vector<float>(icq ? static_cast<size_t>(per_row) : 0),
                          std::vector<float>(icq ? static_cast<size_t>(16 * per_row) : 0)};
      },
      [&](int64_t i, auto& s) {
        DequantRow(w, r0 + i, out + i * cols, s[0].data(), s[1].data(), s[2].data());
      },
      nr * cols >= (int64_t(1) << 16));
}

// xp (n, cols): each run of 2N columns of x reordered to its N even columns, then its N odd ones — the lane
// order DecodeBytes produces. sx (n, cols/64), with ICQ only: Σ x over each block's columns, summed in double
// and rounded once.
void PermuteX(const float* x, int64_t n, int64_t cols, size_t N, bool icq, float* xp, float* sx) {
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * cols;
    for (int64_t c = 0; c < cols; c += 2 * int64_t(N))
      for (size_t i = 0; i < N; ++i) {
        xp[t * cols + c + int64_t(i)] = xt[c + 2 * int64_t(i)];
        xp[t * cols + c + int64_t(N + i)] = xt[c + 2 * int64_t(i) + 1];
      }
    if (!icq) continue;
    for (int64_t j = 0; j < cols / kNf4Block; ++j) {
      double s = 0;
      for (int64_t c = j * kNf4Block; c < (j + 1) * kNf4Block; ++c) s += xt[c];
      sx[t * (cols / kNf4Block) + j] = float(s);
    }
  }
}

// y[t][r] for rows [r0, r1) and NT tokens, in the factored form
//   y = Σ_b A_b·(Σ_{c∈b} NF4[q_c]·x_c) + Σ_b τ_b·(Σ_{c∈b} x_c),
// so the lookup table is the 16 NF4 values themselves (loaded once, kept in registers), the inner loop is
// lookup + FMA, and each block costs one multiply-add by its scale (the tolerance of this reassociation is
// derived in tests/kernels/nf4_matmul_test.cpp).
template <int NT>
void GemvRows(const Nf4Weight& w, const float* HWY_RESTRICT xp, const float* HWY_RESTRICT sx, int64_t r0,
              int64_t r1, float* HWY_RESTRICT y) {
  const DF d;
  constexpr size_t N = hn::MaxLanes(DF());
  const int64_t cols = w.cols, per_row = cols / kNf4Block, rows = w.rows;
  const bool icq = w.icq();
  hn::Vec<DF> tab[16 / N];
  for (size_t i = 0; i < 16 / N; ++i) tab[i] = hn::LoadU(d, kNf4Values + i * N);
  std::vector<float> scale(static_cast<size_t>(per_row)), tau(icq ? static_cast<size_t>(per_row) : 0);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + size_t(r) * w.row_bytes();
    w.block_scales(r * per_row, per_row, scale.data(), tau.data());
    hn::Vec<DF> tot[NT];
    float shift[NT] = {};  // Σ_b τ_b·Σx
    for (int t = 0; t < NT; ++t) tot[t] = hn::Zero(d);
    for (int64_t j = 0; j < per_row; ++j) {
      hn::Vec<DF> acc[NT][2];
      for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = hn::Zero(d);
      for (int64_t k = 0; k < kNf4Block / 2; k += int64_t(N)) {
        hn::Vec<hn::RebindToSigned<DF>> even, odd;
        DecodeBytes(d, row + j * kNf4Block / 2 + k, even, odd);
        const auto we = Lookup16(d, tab, even), wo = Lookup16(d, tab, odd);
        const int64_t c = j * kNf4Block + 2 * k;
        for (int t = 0; t < NT; ++t) {
          acc[t][0] = hn::MulAdd(we, hn::LoadU(d, xp + t * cols + c), acc[t][0]);
          acc[t][1] = hn::MulAdd(wo, hn::LoadU(d, xp + t * cols + c + int64_t(N)), acc[t][1]);
        }
      }
      const auto a = hn::Set(d, scale[size_t(j)]);
      for (int t = 0; t < NT; ++t) tot[t] = hn::MulAdd(a, hn::Add(acc[t][0], acc[t][1]), tot[t]);
      if (icq)
        for (int t = 0; t < NT; ++t) shift[t] += tau[size_t(j)] * sx[t * per_row + j];
    }
    for (int t = 0; t < NT; ++t) y[t * rows + r] = hn::GetLane(hn::SumOfLanes(d, tot[t])) + shift[t];
  }
}

void Gemv(const Nf4Weight& w, const float* x, int64_t n, float* y) {
  constexpr size_t N = hn::MaxLanes(DF());
  std::vector<float> xp(size_t(n * w.cols)), sx(w.icq() ? size_t(n * w.cols / kNf4Block) : 0);
  PermuteX(x, n, w.cols, N, w.icq(), xp.data(), sx.data());
  // Rows in chunks of 8 so a thread's rows are contiguous and the per-call overhead is amortized.
  const int64_t chunks = (w.rows + 7) / 8;
  parallel_rows(
      chunks,
      [&](int64_t ch) {
        const int64_t r0 = ch * 8, r1 = std::min(w.rows, r0 + 8);
        switch (n) {
          case 1:
            GemvRows<1>(w, xp.data(), sx.data(), r0, r1, y);
            break;
          case 2:
            GemvRows<2>(w, xp.data(), sx.data(), r0, r1, y);
            break;
          case 3:
            GemvRows<3>(w, xp.data(), sx.data(), r0, r1, y);
            break;
          default:
            GemvRows<4>(w, xp.data(), sx.data(), r0, r1, y);
            break;
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

void nf4_dequantize_rows(const Nf4Weight& w, int64_t r0, int64_t nr, float* out) {
  check_nf4_weight(w, "nf4_dequantize_rows");
  if (r0 < 0 || nr < 0 || r0 + nr > w.rows)
    fail("nf4_dequantize_rows: rows [{}, {}) outside [0, {})", r0, r0 + nr, w.rows);
  HWY_DYNAMIC_DISPATCH(DequantRows)(w, r0, nr, out);
}

void nf4_gemv(const Nf4Weight& w, const float* x, int64_t n, float* y) {
  check_nf4_weight(w, "nf4_gemv");
  if (n < 1 || n > 4) fail("nf4_gemv: {} tokens (supports 1..4)", n);
  HWY_DYNAMIC_DISPATCH(Gemv)(w, x, n, y);
}

}  // namespace lowbit
#endif  // HWY_ONCE

// Highway SIMD bodies for kernels/slim_matmul.h, compiled once per target and dispatched at run time.
//
// A row is G groups, group g's codes at bits[g] bits from byte group_offset[g] (a byte boundary: group_size
// is a multiple of 8), so every group decodes on its own with the decoder of its width.
// * Dequantization: ≥ 2 bits, the natural-order decoder (kernels/packed_codes-inl.h) and S·(q − Z), exact in
//   f32 as in the affine kernels; 1 bit, each lane picks μ + α or μ + (−α) (slim_value's two values, computed
//   once per (row, group)) by its bit (bitplane-inl.h's Bits/Pick). Bitwise the reference dequantizer.
// * GEMV (n ≤ 4): per group, Σ q·x by the width's decoder into lane-wise FMA chains: 2/3/4/8 bits the planar
//   decoders (x permuted once per call into their lane order, group by group: the widths are per group, not
//   per row), 5..7 bits the natural-order decoder, 1 bit the masked sums Σ_{q=1} x of bitplane-inl.h
//   (Bits/AddTo: 8-14% faster on AVX3/AVX2 than a planar 1-bit decoder with TestBit, 10% slower on SSE4).
//   The chains' sum is scaled into the row's lane-wise total (by S, or 2α in a 1-bit group); the scalar
//   terms −S·Z·X_g (μ·X_g + α·(2·tail − X_g) in a 1-bit group) go to a scalar sum; one lane reduction per
//   (row, token). A group's codes past its last whole block (group_size not a multiple of the block) are
//   decoded one at a time with packed_code. The groups are visited sorted by width (GemvPlan), so the
//   decoder is chosen once per span of equal widths (a switch per group cost 7% on a shuffled 1/2/3-bit
//   mixture). The vector width is chosen per call: the widest whose blocks leave the fewest one-at-a-time
//   codes over the weight's groups. A row's fp16 scales and means are widened by whole vectors (RowToF32).
// Measured single-threaded on 8192×2048 g128 (Zen 4, AVX3, n = 1): 0.98 ms for groups of 1/2/3 bits in
// proportion 1:2:1 (2.00 bits on average, 2.22 stored), 0.90 ms all 2-bit, 1.22 ms all 3-bit, 0.92 ms all
// 1-bit; the affine GEMV 0.80 ms at w2g128, 1.13 ms at w3g128.
// Reads never go past the current row (a 3-bit block's 4N-byte load is copied to a zero-padded buffer at
// the row's end; the natural decoder pads its 16-byte load) nor past the current group for 1-bit blocks.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/slim_matmul_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "core/parallel.h"
#include "formats/affine.h"
#include "kernels/slim_matmul.h"

// Per target: Bits, AddTo, Pick.
#include "kernels/bitplane-inl.h"
// Per target: NaturalTables, DecodeNatural, kPlanes, PlaneColumn, DecodePlanar.
#include "kernels/packed_codes-inl.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The natural decoder's tables of every width 0..8 (0 unused), built once per call.
struct WidthTables {
  NaturalTables t[9] = {NaturalTables(0), NaturalTables(1), NaturalTables(2),
                        NaturalTables(3), NaturalTables(4), NaturalTables(5),
                        NaturalTables(6), NaturalTables(7), NaturalTables(8)};
};

// Row r's n fp16 values of a (rows, n) tensor → f32 in out (room for n rounded up to 16), exact for every
// finite fp16 (the loader and make_slim reject the others). Whole vectors, reading on into the next row where
// the tensor has one (only the last row's tail is copied out first): a per-row copy of a partial vector cost
// a tenth of the GEMV's time with 4 or 8 1-bit groups of 16.
template <class D>
HWY_INLINE void RowToF32(D d, const uint16_t* HWY_RESTRICT t16, int64_t rows, int64_t r, int64_t n,
                         float* HWY_RESTRICT out) {
  const hn::Rebind<hwy::float16_t, D> dh;
  const int64_t N = int64_t(hn::Lanes(d)), end = rows * n;
  const auto* h = reinterpret_cast<const hwy::float16_t*>(t16);
  int64_t i = r * n;
  for (; i < (r + 1) * n && i + N <= end; i += N)
    hn::StoreU(hn::PromoteTo(d, hn::LoadU(dh, h + i)), d, out + (i - r * n));
  if (i < (r + 1) * n) {
    alignas(64) uint16_t tmp[64] = {};
    std::memcpy(tmp, t16 + i, size_t(end - i) * 2);
    hn::StoreU(hn::PromoteTo(d, hn::Load(dh, reinterpret_cast<const hwy::float16_t*>(tmp))), d,
               out + (i - r * n));
  }
}

// ---------------------------------------------------------------- dequantization

template <class D>
HWY_NOINLINE void DequantRow(D d, const SlimWeight& w, const WidthTables& tabs, int64_t r,
                             float* HWY_RESTRICT o, float* HWY_RESTRICT sbuf, float* HWY_RESTRICT mbuf) {
  constexpr size_t N = hn::MaxLanes(D());
  constexpr int64_t K = N < 8 ? 8 : int64_t(N);  // codes per natural chunk
  const int64_t G = w.n_groups(), gs = w.group_size, G1 = w.n_one_bit;
  const size_t rb = w.row_bytes();
  const uint8_t* row = w.codes + size_t(r) * rb;
  RowToF32(d, w.scales, w.rows, r, G, sbuf);
  RowToF32(d, w.means, w.rows, r, G1, mbuf);
  hn::Vec<D> q[K / N];
  for (int64_t g = 0; g < G; ++g) {
    const int b = w.bits[g];
    const uint8_t* gp = row + w.group_offset[g];
    float* og = o + g * gs;
    const float s = sbuf[g];
    int64_t c = 0;
    if (b == 1) {
      const float m = mbuf[w.one_index[g]];
      const float hi = slim_value(1, 1, s, 0, m), lo = slim_value(1, 0, s, 0, m);
      const auto vhi = hn::Set(d, hi), vlo = hn::Set(d, lo);
      for (; c + 32 <= gs; c += 32) {
        const Bits<D> bits(d, gp, size_t(c));
        for (size_t k = 0; k < 32 / N; ++k) hn::StoreU(Pick(d, bits.Sel(d, k), vhi, vlo), d, og + c + k * N);
      }
      for (; c < gs; ++c) og[c] = plane_bit(gp, c) ? hi : lo;
    } else {
      const uint8_t z = w.zeros[r * G + g];
      const auto vs = hn::Set(d, s), vz = hn::Set(d, float(z));
      const size_t avail = rb - size_t(w.group_offset[g]);
      for (; c + K <= gs; c += K) {
        DecodeNatural(d, gp, avail, b, c, tabs.t[b], q);
        for (size_t k = 0; k < K / N; ++k) hn::StoreU(hn::Mul(vs, hn::Sub(q[k], vz)), d, og + c + k * N);
      }
      for (; c < gs; ++c) og[c] = slim_value(b, packed_code(gp, b, c), s, z, 0.0f);
    }
  }
}

void DequantRows(const SlimWeight& w, int64_t r0, int64_t nr, float* out) {
  const hn::CappedTag<float, 16> d;
  const WidthTables tabs;
  const size_t G = size_t(w.n_groups()), G1 = size_t(w.n_one_bit);
  parallel_rows_with(
      nr,
      [&] {
        return std::array{std::vector<float>(G + 16), std::vector<float>(G1 + 16)};
      },  // scales, means
      [&](int64_t i, auto& s) { DequantRow(d, w, tabs, r0 + i, out + i * w.cols, s[0].data(), s[1].data()); },
      nr * w.cols >= (int64_t(1) << 16));
}

// ---------------------------------------------------------------- GEMV

// Codes per block of a group of `bits` bits with N lanes: 32 (one word of a 1-bit group), P·N for the planar
// widths, max(N, 8) for the natural decoder.
inline int64_t BlockCodes(int bits, int64_t N) {
  switch (bits) {
    case 1:
      return 32;
    case 2:
    case 4:
    case 8:
      return 4 * N;
    case 3:
      return 8 * N;
    default:
      return std::max<int64_t>(N, 8);
  }
}

inline bool IsPlanar(int bits) {
  return bits == 2 || bits == 3 || bits == 4 || bits == 8;
}

// Column (from the block's start) whose x lane i of plane j multiplies, for a planar width.
inline int64_t PlaneColumnOf(int bits, int j, int64_t i, int64_t N) {
  switch (bits) {
    case 2:
      return PlaneColumn<2>(j, i, N);
    case 3:
      return PlaneColumn<3>(j, i, N);
    case 4:
      return PlaneColumn<4>(j, i, N);
    default:
      return PlaneColumn<8>(j, i, N);
  }
}

// Group g: nblocks blocks of BlockCodes codes from its first code, then codes [tail, group_size) one by one;
// its codes start at byte `offset` of a row, its parameters at index g of a row's scales and zero-points
// (and mean, index `mean`, in a 1-bit group).
struct GroupRun {
  int64_t g, offset, nblocks, tail, mean;
};

// The GEMV's plan for N lanes: the groups in the order they are visited, sorted by width (stably), so that
// the width's decoder is chosen once per span of equal widths, not per group (a switch per group on a
// mixture of widths costs a branch miss every few groups); spans[k] = (bits, end of span k in runs).
struct GemvPlan {
  std::vector<GroupRun> runs;
  std::vector<std::pair<int, size_t>> spans;
};

GemvPlan PlanGemv(const SlimWeight& w, int64_t N) {
  GemvPlan plan;
  const int64_t G = w.n_groups();
  for (int b = 1; b <= 8; ++b) {
    for (int64_t g = 0; g < G; ++g)
      if (w.bits[g] == b) {
        const int64_t B = BlockCodes(b, N), nb = w.group_size / B;
        plan.runs.push_back({g, w.group_offset[g], nb, nb * B, w.one_index[g]});
      }
    if (plan.spans.empty() ? !plan.runs.empty() : plan.runs.size() > plan.spans.back().second)
      plan.spans.emplace_back(b, plan.runs.size());
  }
  return plan;
}

// xp (n, cols): x with every planar block reordered to its planes' lane order (other codes keep their
// place); sx (n, G): X_g = Σ x over each group, summed in double and rounded once.
void PermuteX(const SlimWeight& w, const GemvPlan& plan, int64_t N, const float* x, int64_t n, float* xp,
              float* sx) {
  const int64_t cols = w.cols, gs = w.group_size, G = w.n_groups();
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * cols;
    float* xpt = xp + t * cols;
    std::memcpy(xpt, xt, size_t(cols) * sizeof(float));
    for (const GroupRun& p : plan.runs) {
      const int b = w.bits[p.g];
      if (!IsPlanar(b)) continue;
      const int P = b == 3 ? 8 : 4;
      const int64_t B = BlockCodes(b, N);
      for (int64_t k = 0; k < p.nblocks; ++k) {
        const int64_t c0 = p.g * gs + k * B;
        for (int j = 0; j < P; ++j)
          for (int64_t i = 0; i < N; ++i) xpt[c0 + j * N + i] = xt[c0 + PlaneColumnOf(b, j, i, N)];
      }
    }
    for (int64_t g = 0; g < G; ++g) {
      double s = 0;
      for (int64_t c = g * gs; c < (g + 1) * gs; ++c) s += xt[c];
      sx[t * G + g] = float(s);
    }
  }
}

// Chains acc[t][a] of token t: a planar group's blocks (gp: the group's codes, avail bytes of the row from
// there; xg: the permuted x at the group's first column, token stride cols).
template <int kBits, int NT, int A, class D>
HWY_INLINE void PlanarBlocks(D d, const uint8_t* HWY_RESTRICT gp, size_t avail, int64_t nblocks,
                             const float* HWY_RESTRICT xg, size_t cols, hn::Vec<D> (&acc)[NT][A]) {
  constexpr int P = kPlanes<kBits>;
  constexpr size_t N = hn::MaxLanes(D());
  constexpr size_t B = P * N;
  for (int64_t k = 0; k < nblocks; ++k) {
    const size_t c = size_t(k) * B;
    const uint8_t* src = gp + c * kBits / 8;
    alignas(64) uint8_t tmp[4 * 16];
    if (kBits == 3 && c * 3 / 8 + 4 * N > avail) {  // the 4N-byte load would pass the row end
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
        acc[t][j % A] = hn::MulAdd(q[j], hn::LoadU(d, xg + t * cols + c + j * N), acc[t][j % A]);
  }
}

// A 1-bit group's blocks of 32 codes: acc += x where the bit is set. Two blocks per step so that every
// chain is used even with N = 16 (two vectors per block).
template <int NT, int A, class D>
HWY_INLINE void OneBitBlocks(D d, const uint8_t* HWY_RESTRICT gp, int64_t nblocks,
                             const float* HWY_RESTRICT xg, size_t cols, hn::Vec<D> (&acc)[NT][A]) {
  constexpr size_t N = hn::MaxLanes(D());
  constexpr size_t V = 32 / N;
  int64_t k = 0;
  for (; k + 2 <= nblocks; k += 2) {
    const size_t c = size_t(k) * 32;
    const Bits<D> b0(d, gp, c), b1(d, gp, c + 32);
#pragma GCC unroll 8
    for (size_t v = 0; v < V; ++v) {
      const auto m = b0.Sel(d, v);
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) acc[t][v % A] = AddTo(d, m, acc[t][v % A], xg + t * cols + c + v * N);
    }
#pragma GCC unroll 8
    for (size_t v = 0; v < V; ++v) {
      const auto m = b1.Sel(d, v);
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t)
        acc[t][(V + v) % A] = AddTo(d, m, acc[t][(V + v) % A], xg + t * cols + c + 32 + v * N);
    }
  }
  if (k < nblocks) {
    const size_t c = size_t(k) * 32;
    const Bits<D> b0(d, gp, c);
#pragma GCC unroll 8
    for (size_t v = 0; v < V; ++v) {
      const auto m = b0.Sel(d, v);
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) acc[t][v % A] = AddTo(d, m, acc[t][v % A], xg + t * cols + c + v * N);
    }
  }
}

// Chunk k of a 5..7-bit group (K = max(N, 8) codes in column order) into chains a0, a0 + 1, ... (mod A).
template <size_t a0, int NT, int A, class D>
HWY_INLINE void NaturalChunk(D d, const uint8_t* HWY_RESTRICT gp, size_t avail, int bits,
                             const NaturalTables& tab, size_t c, const float* HWY_RESTRICT xg, size_t cols,
                             hn::Vec<D> (&acc)[NT][A]) {
  constexpr size_t N = hn::MaxLanes(D());
  constexpr size_t V = (N < 8 ? 8 : N) / N;
  hn::Vec<D> q[V];
  DecodeNatural(d, gp, avail, bits, int64_t(c), tab, q);
#pragma GCC unroll 2
  for (size_t v = 0; v < V; ++v)
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t)
      acc[t][(a0 + v) % A] = hn::MulAdd(q[v], hn::LoadU(d, xg + t * cols + c + v * N), acc[t][(a0 + v) % A]);
}

// A 5..7-bit group's chunks, two per step (alternating chains).
template <int NT, int A, class D>
HWY_INLINE void NaturalBlocks(D d, const uint8_t* HWY_RESTRICT gp, size_t avail, int bits,
                              const NaturalTables& tab, int64_t nblocks, const float* HWY_RESTRICT xg,
                              size_t cols, hn::Vec<D> (&acc)[NT][A]) {
  constexpr size_t N = hn::MaxLanes(D());
  constexpr size_t K = N < 8 ? 8 : N;
  int64_t k = 0;
  for (; k + 2 <= nblocks; k += 2) {
    NaturalChunk<0>(d, gp, avail, bits, tab, size_t(k) * K, xg, cols, acc);
    NaturalChunk<K / N>(d, gp, avail, bits, tab, size_t(k + 1) * K, xg, cols, acc);
  }
  if (k < nblocks) NaturalChunk<0>(d, gp, avail, bits, tab, size_t(k) * K, xg, cols, acc);
}

// The groups runs[0..count) of width kBits (0: a natural width 5..7, the same for all of them) of one row,
// for NT tokens: per group the chains, the codes past the last block, then the group's terms into the row's
// lane-wise total tot and scalar sum sc.
template <int kBits, int NT, class D>
HWY_INLINE void GemvGroups(D d, const SlimWeight& w, const uint8_t* HWY_RESTRICT row, const uint8_t* zr,
                           const GroupRun* runs, size_t count, const WidthTables& tabs,
                           const float* HWY_RESTRICT xp, const float* HWY_RESTRICT sx,
                           const float* HWY_RESTRICT sbuf, const float* HWY_RESTRICT mbuf,
                           hn::Vec<D> (&tot)[NT], float (&sc)[NT]) {
  constexpr int A = NT <= 2 ? 4 : 2;  // independent chains per token (hides the FMA latency)
  const int64_t G = w.n_groups(), gs = w.group_size;
  const size_t cols = size_t(w.cols), rb = w.row_bytes();
  const int b = kBits == 0 ? w.bits[runs[0].g] : kBits;
  for (size_t k = 0; k < count; ++k) {
    const GroupRun& p = runs[k];
    const int64_t g = p.g;
    const uint8_t* gp = row + p.offset;
    const size_t avail = rb - size_t(p.offset);
    const float* xg = xp + g * gs;
    hn::Vec<D> acc[NT][A];
    for (int t = 0; t < NT; ++t)
      for (int a = 0; a < A; ++a) acc[t][a] = hn::Zero(d);
    if constexpr (kBits == 1)
      OneBitBlocks<NT, A>(d, gp, p.nblocks, xg, cols, acc);
    else if constexpr (kBits == 0)
      NaturalBlocks<NT, A>(d, gp, avail, b, tabs.t[b], p.nblocks, xg, cols, acc);
    else
      PlanarBlocks<kBits, NT, A>(d, gp, avail, p.nblocks, xg, cols, acc);
    float part[NT] = {};  // Σ q·x over the codes past the last block
    for (int64_t c = p.tail; c < gs; ++c) {
      const float q = float(packed_code(gp, b, c));
      for (int t = 0; t < NT; ++t) part[t] += q * xg[size_t(t) * cols + size_t(c)];
    }
    const float s = sbuf[g];
    if constexpr (kBits == 1) {
      const float m = mbuf[p.mean];
      const auto v2s = hn::Set(d, 2.0f * s);  // exact
      for (int t = 0; t < NT; ++t) {
        auto a = acc[t][0];
        for (int i = 1; i < A; ++i) a = hn::Add(a, acc[t][i]);
        tot[t] = hn::MulAdd(v2s, a, tot[t]);
        const float X = sx[t * G + g];
        sc[t] += s * (2.0f * part[t] - X) + m * X;
      }
    } else {
      const float z = float(zr[g]);
      const auto vs = hn::Set(d, s);
      for (int t = 0; t < NT; ++t) {
        auto a = acc[t][0];
        for (int i = 1; i < A; ++i) a = hn::Add(a, acc[t][i]);
        tot[t] = hn::MulAdd(vs, a, tot[t]);
        sc[t] += s * (part[t] - z * sx[t * G + g]);
      }
    }
  }
}

// y[t][r] for rows [r0, r1) and NT tokens. sbuf: G + 16 floats, mbuf: G1 + 16 floats of scratch.
template <int NT, class D>
void GemvRows(D d, const SlimWeight& w, const GemvPlan& plan, const WidthTables& tabs,
              const float* HWY_RESTRICT xp, const float* HWY_RESTRICT sx, int64_t r0, int64_t r1,
              float* HWY_RESTRICT y, float* HWY_RESTRICT sbuf, float* HWY_RESTRICT mbuf) {
  const int64_t G = w.n_groups(), G1 = w.n_one_bit, rows = w.rows;
  const size_t rb = w.row_bytes();
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + size_t(r) * rb;
    const uint8_t* zr = w.zeros + r * G;
    RowToF32(d, w.scales, w.rows, r, G, sbuf);
    RowToF32(d, w.means, w.rows, r, G1, mbuf);
    hn::Vec<D> tot[NT];
    float sc[NT];
    for (int t = 0; t < NT; ++t) tot[t] = hn::Zero(d), sc[t] = 0;
    size_t begin = 0;
    for (const auto& [b, end] : plan.spans) {
      const GroupRun* runs = plan.runs.data() + begin;
      const size_t count = end - begin;
      switch (b) {
        case 1:
          GemvGroups<1, NT>(d, w, row, zr, runs, count, tabs, xp, sx, sbuf, mbuf, tot, sc);
          break;
        case 2:
          GemvGroups<2, NT>(d, w, row, zr, runs, count, tabs, xp, sx, sbuf, mbuf, tot, sc);
          break;
        case 3:
          GemvGroups<3, NT>(d, w, row, zr, runs, count, tabs, xp, sx, sbuf, mbuf, tot, sc);
          break;
        case 4:
          GemvGroups<4, NT>(d, w, row, zr, runs, count, tabs, xp, sx, sbuf, mbuf, tot, sc);
          break;
        case 8:
          GemvGroups<8, NT>(d, w, row, zr, runs, count, tabs, xp, sx, sbuf, mbuf, tot, sc);
          break;
        default:
          GemvGroups<0, NT>(d, w, row, zr, runs, count, tabs, xp, sx, sbuf, mbuf, tot, sc);
          break;
      }
      begin = end;
    }
    for (int t = 0; t < NT; ++t) y[t * rows + r] = hn::GetLane(hn::SumOfLanes(d, tot[t])) + sc[t];
  }
}

template <class D>
void GemvWith(D d, const SlimWeight& w, const float* x, int64_t n, float* y) {
  const int64_t G = w.n_groups(), G1 = w.n_one_bit, N = int64_t(hn::Lanes(d));
  const GemvPlan plan = PlanGemv(w, N);
  const WidthTables tabs;
  std::vector<float> xp(size_t(n * w.cols)), sx(size_t(n * G));
  PermuteX(w, plan, N, x, n, xp.data(), sx.data());
  // Rows in chunks of 8 so a thread's rows are contiguous and the per-call overhead is amortized.
  const int64_t chunks = (w.rows + 7) / 8;
  parallel_rows_with(
      chunks,
      [&] {
        return std::array{std::vector<float>(size_t(G + 16)), std::vector<float>(size_t(G1 + 16))};
      },
      [&](int64_t ch, auto& s) {
        const int64_t r0 = ch * 8, r1 = std::min(w.rows, r0 + 8);
        float *sbuf = s[0].data(), *mbuf = s[1].data();
        switch (n) {
          case 1:
            return GemvRows<1>(d, w, plan, tabs, xp.data(), sx.data(), r0, r1, y, sbuf, mbuf);
          case 2:
            return GemvRows<2>(d, w, plan, tabs, xp.data(), sx.data(), r0, r1, y, sbuf, mbuf);
          case 3:
            return GemvRows<3>(d, w, plan, tabs, xp.data(), sx.data(), r0, r1, y, sbuf, mbuf);
          default:
            return GemvRows<4>(d, w, plan, tabs, xp.data(), sx.data(), r0, r1, y, sbuf, mbuf);
        }
      },
      w.rows * w.cols >= (int64_t(1) << 16));
}

// Codes of w that a width of N lanes leaves to the one-at-a-time path (per row).
int64_t ScalarCodes(const SlimWeight& w, int64_t N) {
  int64_t s = 0;
  for (int64_t g = 0; g < w.n_groups(); ++g) s += w.group_size % BlockCodes(w.bits[g], N);
  return s;
}

// The widest vector whose blocks leave the fewest codes to the one-at-a-time path.
void Gemv(const SlimWeight& w, const float* x, int64_t n, float* y) {
  const hn::CappedTag<float, 16> d16;
  const hn::CappedTag<float, 8> d8;
  const hn::CappedTag<float, 4> d4;
  const int64_t s16 = ScalarCodes(w, int64_t(hn::Lanes(d16))), s8 = ScalarCodes(w, int64_t(hn::Lanes(d8))),
                s4 = ScalarCodes(w, int64_t(hn::Lanes(d4)));
  if (s16 <= s8 && s16 <= s4) return GemvWith(d16, w, x, n, y);
  if (s8 <= s4) return GemvWith(d8, w, x, n, y);
  return GemvWith(d4, w, x, n, y);
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "core/error.h"

namespace lowbit {

HWY_EXPORT(DequantRows);
HWY_EXPORT(Gemv);

void slim_dequantize_rows(const SlimWeight& w, int64_t r0, int64_t nr, float* out) {
  check_slim_weight(w, "slim_dequantize_rows");
  if (r0 < 0 || nr < 0 || r0 + nr > w.rows)
    fail("slim_dequantize_rows: rows [{}, {}) outside [0, {})", r0, r0 + nr, w.rows);
  HWY_DYNAMIC_DISPATCH(DequantRows)(w, r0, nr, out);
}

void slim_gemv(const SlimWeight& w, const float* x, int64_t n, float* y) {
  check_slim_weight(w, "slim_gemv");
  if (n < 1 || n > 4) fail("slim_gemv: {} tokens (supports 1..4)", n);
  HWY_DYNAMIC_DISPATCH(Gemv)(w, x, n, y);
}

}  // namespace lowbit
#endif  // HWY_ONCE

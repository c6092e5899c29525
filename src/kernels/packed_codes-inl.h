// Highway per-target decoders of the packed LSB-first code stream of formats/affine.h (b bits per code, code
// c at bit c·b of the row), shared by the kernels whose codes use that layout (affine, slim). Included by a
// *_hwy.cpp after <hwy/highway.h>, once per target (the usual Highway "-inl.h" guard below).
//
// * Planar (2, 3, 4, 8 bits; the decode GEMVs). A block of P·N codes (N f32 lanes, P = 4 planes, 8 for 3
//   bits) is unpacked with whole-vector shifts and masks into P vectors whose lanes hold codes in a fixed
//   permuted order (PlaneColumn): e.g. 4 bits, N bytes zero-extended to N int32 lanes → the low nibbles are
//   the even codes and the high nibbles the odd ones. x, shared by every row, is permuted once per call into
//   that same order, so the inner loop is just convert + FMA. 3 bits: lane i assembles the 24-bit unit at
//   byte 3i (8 codes in 3 bytes) with two cross-lane permutes, plane j is (unit >> 3j) & 7.
// * Natural (any width 1..8). A chunk of 8 or 16 codes starting at a multiple of 8 codes (a byte boundary)
//   lies in at most 16 bytes; each lane picks its two bytes with a byte shuffle, then a per-lane variable
//   shift and mask extract the code, in column order.
// Also ScalesToF32, a row of fp16 values to f32.
#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(LOWBIT_KERNELS_PACKED_CODES_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LOWBIT_KERNELS_PACKED_CODES_INL_H_
#undef LOWBIT_KERNELS_PACKED_CODES_INL_H_
#else
#define LOWBIT_KERNELS_PACKED_CODES_INL_H_
#endif

#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Row scales (G fp16) → f32. Converting the whole row up front keeps the f16 decode out of the group loop.
// Exact for every finite fp16 (subnormals included); on targets without F16C (SSSE3/SSE4) Highway's emulation
// does not produce inf/NaN for non-finite inputs, which importers reject anyway (see from_gptq).
template <class D>
HWY_INLINE void ScalesToF32(D d, const uint16_t* HWY_RESTRICT s16, int64_t G, float* HWY_RESTRICT out) {
  const hn::Rebind<hwy::float16_t, D> dh;
  const int64_t N = int64_t(hn::Lanes(d));
  const auto* h = reinterpret_cast<const hwy::float16_t*>(s16);
  int64_t g = 0;
  for (; g + N <= G; g += N) hn::StoreU(hn::PromoteTo(d, hn::LoadU(dh, h + g)), d, out + g);
  if (g < G) {
    alignas(64) uint16_t tmp[64] = {};
    alignas(64) float o[64];
    std::memcpy(tmp, s16 + g, size_t(G - g) * 2);
    hn::Store(hn::PromoteTo(d, hn::Load(dh, reinterpret_cast<const hwy::float16_t*>(tmp))), d, o);
    std::memcpy(out + g, o, size_t(G - g) * 4);
  }
}

// ---------------------------------------------------------------- natural-order decoder

// Byte-shuffle tables for a chunk of up to 16 codes starting on a byte boundary: code i starts at bit i·b,
// i.e. in byte lo[i] at shift sh[i], and may spill into byte hi[i] = lo[i] + 1 (clamped: when it does not
// spill, hi only feeds bits that the mask drops).
struct NaturalTables {
  alignas(16) uint8_t lo[16], hi[16];
  alignas(64) uint32_t sh[16];
  explicit NaturalTables(int bits) {
    for (int i = 0; i < 16; ++i) {
      const int bit = i * bits;
      lo[i] = uint8_t(bit >> 3);
      hi[i] = uint8_t(std::min(bit / 8 + 1, 15));
      sh[i] = uint32_t(bit & 7);
    }
  }
};

// 16 bytes of the row from byte `off`, zero-padded past the row end (off < rb).
HWY_INLINE hn::Vec<hn::Full128<uint8_t>> LoadRowBytes16(const uint8_t* row, size_t off, size_t rb) {
  const hn::Full128<uint8_t> d8;
  if (off + 16 <= rb) return hn::LoadU(d8, row + off);
  alignas(16) uint8_t tmp[16] = {};
  std::memcpy(tmp, row + off, rb - off);
  return hn::Load(d8, tmp);
}

// Codes [c, c + K) in column order as K/N f32 vectors, K = max(N, 8); c is a multiple of 8.
template <class D>
HWY_INLINE void DecodeNatural(D d, const uint8_t* row, size_t rb, int bits, int64_t c,
                              const NaturalTables& tab, hn::Vec<D>* q) {
  const hn::Rebind<uint8_t, D> du8;
  const hn::RebindToUnsigned<D> du;
  const hn::RebindToSigned<D> di;
  constexpr size_t N = hn::MaxLanes(D());
  constexpr size_t K = N < 8 ? 8 : N;
  const auto bytes = LoadRowBytes16(row, size_t(c) * size_t(bits) / 8, rb);
  const auto mask = hn::Set(du, (1u << bits) - 1);
  for (size_t k = 0; k < K / N; ++k) {
    const auto l = hn::PromoteTo(du, hn::TableLookupBytes(bytes, hn::LoadU(du8, tab.lo + k * N)));
    const auto h = hn::PromoteTo(du, hn::TableLookupBytes(bytes, hn::LoadU(du8, tab.hi + k * N)));
    const auto v = hn::Or(l, hn::ShiftLeft<8>(h)) >> hn::LoadU(du, tab.sh + k * N);
    q[k] = hn::ConvertTo(d, hn::BitCast(di, hn::And(v, mask)));
  }
}

// ---------------------------------------------------------------- planar decoder (decode GEMV)

template <int kBits>
constexpr int kPlanes = kBits == 3 ? 8 : 4;
// Codes per byte-aligned unit: a block may start only at a multiple of this.
template <int kBits>
constexpr int64_t kAlign = kBits == 3 ? 8 : 8 / kBits;

// Column (relative to the block start) of lane i of plane j, for N lanes.
template <int kBits>
HWY_INLINE int64_t PlaneColumn(int j, int64_t i, int64_t N) {
  if constexpr (kBits == 8) return j * N + i;                        // 4 loads of N bytes
  if constexpr (kBits == 4) return (j / 2) * 2 * N + 2 * i + j % 2;  // 2 loads; low nibble, high nibble
  if constexpr (kBits == 2) return 4 * i + j;                        // 1 load; crumbs 0..3 of byte i
  return 8 * i + j;                                                  // 3 bits: code j of unit i
}

// Unpacks one block (P·N codes at byte p) into P f32 vectors, lanes in PlaneColumn order. For 3 bits the
// caller guarantees 4N readable bytes (the block is 3N).
template <int kBits, class D>
HWY_INLINE void DecodePlanar(D d, const uint8_t* HWY_RESTRICT p, hn::Vec<D>* q) {
  const hn::RebindToSigned<D> di;
  const hn::Rebind<uint8_t, D> du8;
  constexpr size_t N = hn::MaxLanes(D());
  if constexpr (kBits == 8) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) q[j] = hn::ConvertTo(d, hn::PromoteTo(di, hn::LoadU(du8, p + j * N)));
  } else if constexpr (kBits == 4) {
    const auto m = hn::Set(di, 15);
#pragma GCC unroll 2
    for (int s = 0; s < 2; ++s) {
      const auto v = hn::PromoteTo(di, hn::LoadU(du8, p + s * N));
      q[2 * s] = hn::ConvertTo(d, hn::And(v, m));
      q[2 * s + 1] = hn::ConvertTo(d, hn::ShiftRight<4>(v));
    }
  } else if constexpr (kBits == 2) {
    const auto v = hn::PromoteTo(di, hn::LoadU(du8, p));
    const auto m = hn::Set(di, 3);
    q[0] = hn::ConvertTo(d, hn::And(v, m));
    q[1] = hn::ConvertTo(d, hn::And(hn::ShiftRight<2>(v), m));
    q[2] = hn::ConvertTo(d, hn::And(hn::ShiftRight<4>(v), m));
    q[3] = hn::ConvertTo(d, hn::ShiftRight<6>(v));
  } else {
    static_assert(kBits == 3);
    // Lane i needs the 24-bit unit at byte 3i: dword 3i/4 shifted right by 8·(3i mod 4), OR'ed with the next
    // dword shifted left when the unit straddles the two. Two cross-lane permutes of one 4N-byte load (the
    // caller guarantees 4N readable bytes); the lane tables are loop-invariant and hoisted by the compiler.
    const hn::RebindToUnsigned<D> du;
    const auto i3 = hn::Mul(hn::Iota(di, 0), hn::Set(di, 3));
    const auto lo_idx = hn::ShiftRight<2>(i3);
    const auto hi_idx = hn::Min(hn::Add(lo_idx, hn::Set(di, 1)), hn::Set(di, int32_t(N - 1)));
    const auto shr = hn::ShiftLeft<3>(hn::And(i3, hn::Set(di, 3)));
    // Bits ≥ 24 of a unit are never used, so when the unit does not straddle (shr 0 or 8), shifting the next
    // dword left by 24 harmlessly puts it out of the way; all counts stay below 32.
    const auto shl =
        hn::IfThenElse(hn::Gt(shr, hn::Set(di, 8)), hn::Sub(hn::Set(di, 32), shr), hn::Set(di, 24));
    const auto words = hn::LoadU(du, reinterpret_cast<const uint32_t*>(p));
    const auto lo = hn::TableLookupLanes(words, hn::IndicesFromVec(du, hn::BitCast(du, lo_idx)));
    const auto hi = hn::TableLookupLanes(words, hn::IndicesFromVec(du, hn::BitCast(du, hi_idx)));
    const auto v = hn::BitCast(di, hn::Or(lo >> hn::BitCast(du, shr), hi << hn::BitCast(du, shl)));
    const auto m = hn::Set(di, 7);
    q[0] = hn::ConvertTo(d, hn::And(v, m));
    q[1] = hn::ConvertTo(d, hn::And(hn::ShiftRight<3>(v), m));
    q[2] = hn::ConvertTo(d, hn::And(hn::ShiftRight<6>(v), m));
    q[3] = hn::ConvertTo(d, hn::And(hn::ShiftRight<9>(v), m));
    q[4] = hn::ConvertTo(d, hn::And(hn::ShiftRight<12>(v), m));
    q[5] = hn::ConvertTo(d, hn::And(hn::ShiftRight<15>(v), m));
    q[6] = hn::ConvertTo(d, hn::And(hn::ShiftRight<18>(v), m));
    q[7] = hn::ConvertTo(d, hn::And(hn::ShiftRight<21>(v), m));
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#endif  // LOWBIT_KERNELS_PACKED_CODES_INL_H_

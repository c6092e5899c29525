// Highway per-target helpers shared by the bit-plane kernels (dualbin, pbllm): how the bits of a plane row
// (LSB-first: bit c % 8 of byte c / 8 is column c) select lanes of x. Included by a *_hwy.cpp after
// <hwy/highway.h>, once per target (the usual Highway "-inl.h" guard below).
#include <cstdint>
#include <cstring>

// Once, not per target: lane masks of a byte's bits.
#ifndef LOWBIT_KERNELS_BITPLANE_BYTE_LANES_
#define LOWBIT_KERNELS_BITPLANE_BYTE_LANES_
namespace lowbit {
namespace {
// m[b][i]: all ones where bit i of b is set, else 0; one 32-byte row per byte value (8 KiB, stays in L1).
struct ByteLanes {
  alignas(32) uint32_t m[256][8];
};
constexpr ByteLanes make_byte_lanes() {
  ByteLanes t{};
  for (int b = 0; b < 256; ++b)
    for (int i = 0; i < 8; ++i) t.m[b][i] = (b >> i) & 1 ? 0xFFFFFFFFu : 0u;
  return t;
}
constexpr ByteLanes kByteLanes = make_byte_lanes();
}  // namespace
}  // namespace lowbit
#endif

#if defined(LOWBIT_KERNELS_BITPLANE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LOWBIT_KERNELS_BITPLANE_INL_H_
#undef LOWBIT_KERNELS_BITPLANE_INL_H_
#else
#define LOWBIT_KERNELS_BITPLANE_INL_H_
#endif

#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The mask of the N plane bits of columns [c, c + N) (c a multiple of N, N ≤ 16): N/8 bytes, or the bits of
// one byte for N < 8. Read into a zeroed local first: LoadMaskBits may read up to 8 bytes, which could pass
// the end of the plane.
template <class D>
HWY_INLINE hn::Mask<D> PlaneMask(D d, const uint8_t* HWY_RESTRICT plane, int64_t c) {
  constexpr size_t N = hn::MaxLanes(D());
  static_assert(N <= 16, "a mask is at most two bytes of a plane");
  alignas(8) uint8_t bits[8] = {};
  if constexpr (N >= 8)
    std::memcpy(bits, plane + c / 8, N / 8);
  else
    bits[0] = uint8_t(plane[c / 8] >> (c % 8));
  return hn::LoadMaskBits(d, bits);
}

// How the 32 plane bits of a block of columns [c, c + 32) (c a multiple of 32) select the lanes of x to add,
// per target: this selection is the masked sum's whole cost, as the weights are never expanded. Bits(d, p, c)
// reads the block of plane row p, Sel(d, k) decodes the bits of vector k (columns c + k·N ...), and
// AddTo(d, sel, acc, x) adds the selected lanes of x to acc. Measured on the benchmark's shapes (8192×2048,
// one thread, Zen 4; see docs/dualbin.md):
// * AVX-512 (N = 16): the word is broadcast once per block and a vptestmd against the lanes' bits makes
//   each mask register; acc + (m ? x : 0) is one merge-masked vaddps with x as its memory operand, written
//   IfThenElse(m, acc + x, acc) so the compiler emits exactly that. Loading the mask registers from the
//   plane instead (kmovw, what LoadMaskBits compiles to) was 2× slower: the moves into mask registers,
//   not the adds, set the pace.
// * AVX2 (N = 8): a per-lane variable shift of the broadcast word puts bit k·8 + i in the sign bit of lane
//   i, which selects x or 0 (IfNegativeThenElse; the compiler emits compare + AND). Faster with 4 tokens
//   than the byte table below, as fast with one.
// * Other targets (SSE4: no variable shift): each byte's lane mask from an 8 KiB table (kByteLanes), one
//   aligned load, then AND; 1.8× faster than LoadMaskBits' emulation there.
// Selected lanes add x, unselected ones add nothing (or 0): the same values, up to the sign of a zero sum.
// Pick(d, sel, yes, no) is the same selection as a blend, for kernels that pick each lane's weight value from
// broadcast levels rather than add x (billm): one merge-masked vblendmps on AVX-512, a vblendvps on the sign
// bit on AVX2, blendvps on the table's all-ones lanes elsewhere; yes where the bit is set, else no, exactly.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
template <class D>
struct Bits {
  using DU = hn::RebindToUnsigned<D>;
  hn::Vec<DU> word;  // the 32 bits in every lane
  HWY_INLINE Bits(D, const uint8_t* HWY_RESTRICT plane, size_t c) {
    uint32_t w;
    std::memcpy(&w, plane + c / 8, 4);  // LSB-first bytes: bit j is column c + j (x86 is little-endian)
    word = hn::Set(DU(), w);
  }
  HWY_INLINE hn::Mask<D> Sel(D d, size_t k) const {
    const DU du;
    return hn::RebindMask(
        d, hn::TestBit(word, hn::Shl(hn::Set(du, 1u), hn::Iota(du, uint32_t(k * hn::MaxLanes(D()))))));
  }
};
template <class D>
HWY_INLINE hn::Vec<D> AddTo(D d, hn::Mask<D> m, hn::Vec<D> acc, const float* HWY_RESTRICT x) {
  return hn::IfThenElse(m, hn::Add(acc, hn::LoadU(d, x)), acc);
}
template <class D>
HWY_INLINE hn::Vec<D> Pick(D, hn::Mask<D> m, hn::Vec<D> yes, hn::Vec<D> no) {
  return hn::IfThenElse(m, yes, no);
}
#elif HWY_ARCH_X86 && HWY_TARGET == HWY_AVX2
template <class D>
struct Bits {
  using DI = hn::RebindToSigned<D>;
  hn::Vec<DI> word;  // the 32 bits in every lane
  HWY_INLINE Bits(D, const uint8_t* HWY_RESTRICT plane, size_t c) {
    int32_t w;
    std::memcpy(&w, plane + c / 8, 4);  // LSB-first bytes: bit j is column c + j (x86 is little-endian)
    word = hn::Set(DI(), w);
  }
  HWY_INLINE hn::Vec<DI> Sel(D, size_t k) const {
    const DI di;
    return hn::Shl(word, hn::Sub(hn::Set(di, int32_t(31 - k * hn::MaxLanes(D()))), hn::Iota(di, 0)));
  }
};
template <class D>
HWY_INLINE hn::Vec<D> AddTo(D d, hn::Vec<hn::RebindToSigned<D> > sel, hn::Vec<D> acc,
                            const float* HWY_RESTRICT x) {
  const hn::RebindToSigned<D> di;
  return hn::Add(acc,
                 hn::BitCast(d, hn::IfNegativeThenElse(sel, hn::BitCast(di, hn::LoadU(d, x)), hn::Zero(di))));
}
template <class D>
HWY_INLINE hn::Vec<D> Pick(D d, hn::Vec<hn::RebindToSigned<D> > sel, hn::Vec<D> yes, hn::Vec<D> no) {
  return hn::IfNegativeThenElse(hn::BitCast(d, sel), yes, no);
}
#else
template <class D>
struct Bits {
  const uint8_t* p;
  size_t c;
  HWY_INLINE Bits(D, const uint8_t* HWY_RESTRICT plane, size_t col) : p(plane), c(col) {}
  HWY_INLINE hn::Vec<hn::RebindToUnsigned<D> > Sel(D, size_t k) const {
    const size_t col = c + k * hn::MaxLanes(D());  // N ≤ 8 lanes of one byte's row, 16-byte aligned
    return hn::Load(hn::RebindToUnsigned<D>(), kByteLanes.m[p[col / 8]] + col % 8);
  }
};
template <class D>
HWY_INLINE hn::Vec<D> AddTo(D d, hn::Vec<hn::RebindToUnsigned<D> > m, hn::Vec<D> acc,
                            const float* HWY_RESTRICT x) {
  return hn::Add(acc, hn::And(hn::BitCast(d, m), hn::LoadU(d, x)));
}
template <class D>
HWY_INLINE hn::Vec<D> Pick(D d, hn::Vec<hn::RebindToUnsigned<D> > m, hn::Vec<D> yes, hn::Vec<D> no) {
  return hn::IfThenElse(hn::MaskFromVec(hn::BitCast(d, m)), yes, no);
}
#endif

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#endif  // LOWBIT_KERNELS_BITPLANE_INL_H_

// BiLLM binarization (Huang et al. 2024, "BiLLM: Pushing the Limit of Post-Training Quantization for LLMs",
// arXiv 2402.04291, §3.1–3.2). A linear is cut into column blocks of group_size columns; within a block some
// whole columns are salient (chosen by the method). Every weight has two bits A and B:
//   non-salient column: B picks one of two binarization groups by magnitude (B = 0 "mask1", B = 1 "mask2")
//                       and A is the weight's sign within its group (one binarization each, §3.2);
//   salient column:     A is the first-order sign and B the sign of the second-order residual (the
//                       residual approximation of §3.1).
// Each (row, block) has 7 fp16 parameters, in this order: μ1, α1, μ2, α2, μs, αs1, αs2, and the weight is,
// in f32 arithmetic on the exactly converted parameters (in exactly this order: the method's error
// compensation needs the kernels' Ŵ bit for bit):
//   non-salient, B = 0:  μ1 + (A ? α1 : −α1)
//   non-salient, B = 1:  μ2 + (A ? α2 : −α2)
//   salient:             (μs + (A ? αs1 : −αs1)) + (B ? αs2 : −αs2)
// so a (row, block) takes one of 8 values (billm_levels), indexed by the 3-bit code A + 2·B + 4·salient.
// Upstream (Aaronhuang-778/BiLLM) only simulates this in fp16; here it is stored in its bits:
//
//   P.bl_signs    U8   (rows, cols/8)   plane A, LSB-first (bit c % 8 of byte c / 8; the marker tensor)
//   P.bl_plane2   U8   (rows, cols/8)   plane B, the same layout
//   P.bl_salient  U8   (cols/8)         1 = salient column, LSB-first
//   P.bl_par      F16  (rows, 7·G)      the 7 parameters of each (row, block), block-major within a row
//                                       (G = cols / group_size, so group_size = cols / (shape[1] / 7))
// Exactly (2·rows·cols + 112·rows·G + cols) / (rows·cols) bits per weight: 2.875 at g128 (+1/rows).
// group_size: a multiple of 32 (whole 32-bit words of each plane per block), dividing cols.
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>

#include "core/dtype.h"
#include "formats/format.h"

namespace lowbit {

inline constexpr int64_t kBillmDefaultGroup = 128;
inline constexpr int kBillmPar = 7;  // fp16 parameters per (row, block)

// The 8 values a weight of (row, block) can take, indexed a + 2·b + 4·salient, from the block's 7 parameters
// already converted to f32 (p[0..7) = μ1, α1, μ2, α2, μs, αs1, αs2). The one definition of Ŵ: the reference
// dequantizer, the SIMD kernels and the quantization method all take their values from here.
inline void billm_levels_f32(const float* p, float out[8]) {
  const float mu1 = p[0], a1 = p[1], mu2 = p[2], a2 = p[3], mus = p[4], as1 = p[5], as2 = p[6];
  out[0] = mu1 + (-a1);
  out[1] = mu1 + a1;
  out[2] = mu2 + (-a2);
  out[3] = mu2 + a2;
  out[4] = (mus + (-as1)) + (-as2);
  out[5] = (mus + as1) + (-as2);
  out[6] = (mus + (-as1)) + as2;
  out[7] = (mus + as1) + as2;
}

// The same from the 7 stored fp16 parameters (converted exactly with f16_to_f32).
inline void billm_levels(const uint16_t* par, float out[8]) {
  float p[kBillmPar];
  for (int i = 0; i < kBillmPar; ++i) p[i] = f16_to_f32(par[i]);
  billm_levels_f32(p, out);
}

// One weight's value: billm_levels(par)[a + 2·b + 4·salient].
inline float billm_level(const uint16_t* par, bool salient, bool a, bool b) {
  float l[8];
  billm_levels(par, l);
  return l[int(a) + 2 * int(b) + 4 * int(salient)];
}

const Format& billm_format();

struct BillmWeight final : PackedWeight {
  int64_t group_size = kBillmDefaultGroup;
  const uint8_t* signs = nullptr;    // (rows, cols/8) plane A
  const uint8_t* plane2 = nullptr;   // (rows, cols/8) plane B
  const uint8_t* salient = nullptr;  // (cols/8) 1 = salient column
  const uint16_t* par = nullptr;     // fp16 (rows, G, 7): μ1, α1, μ2, α2, μs, αs1, αs2
  // What lowbit owns whatever `owner` is (a loaded weight's owner is its mapping): every buffer of a new
  // weight, a copy of a misaligned bl_par.
  std::shared_ptr<const void> derived;

  int64_t n_groups() const { return cols / group_size; }
  size_t row_bytes() const { return size_t(cols / 8); }
  // The 7 parameters of (row r, block g).
  const uint16_t* params(int64_t r, int64_t g) const { return par + kBillmPar * (r * n_groups() + g); }
  // Every stored bit: two planes, the salient columns, 7 fp16 per (row, block).
  double bits_per_weight() const;
  const Format& format() const override { return billm_format(); }
};

const BillmWeight& as_billm(const PackedWeight& w);

// Throws a one-line Error naming `what` unless w's shape rules hold and its buffers are present.
void check_billm_weight(const BillmWeight& w, std::string_view what);

// The reference dequantizer: Ŵ rows [r0, r0 + nr) into out (nr, cols), element by element from
// billm_levels.
void billm_dequantize_rows_scalar(const BillmWeight& w, int64_t r0, int64_t nr, float* out);

// An owned weight. a, b: (rows, cols) bytes 0/1 (planes A and B; nonzero = 1); salient: (cols) bytes 0/1;
// par: (rows, G, 7) f32, rounded to fp16 here (a value not finite in fp16 is a one-line error naming the
// parameter, row and block).
std::shared_ptr<BillmWeight> make_billm(int64_t rows, int64_t cols, int64_t group_size,
                                        const uint8_t* salient, const uint8_t* a, const uint8_t* b,
                                        const float* par);

}  // namespace lowbit

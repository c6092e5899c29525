// SliM-LLM group-wise mixed precision (Huang et al. 2024, "SliM-LLM: Salience-Driven Mixed-Precision
// Quantization for Large Language Models", arXiv 2405.14917). A linear W (rows, cols) is cut into column
// groups of group_size columns (a multiple of 8, dividing cols), and each GROUP g (all rows alike) has its
// own bit width bits[g] in 1..8, chosen by the method from the group's salience. Per (row, group), codes c in
// [0, 2^bits − 1] and
//   bits[g] >= 2:  Ŵ = scale · (float(c) − float(zero))   zero an integer 0..255, scale fp16 (affine's form)
//   bits[g] == 1:  Ŵ = mean + (c ? scale : −scale)         mean and scale fp16 (a binarized group: mean ± α)
// in f32 on the exactly converted fp16 values, exactly as slim_value below writes it (the reference
// dequantizer, the SIMD kernels and the quantization method all evaluate that one function).
//
// Checkpoint tensors, for a linear "P" (format "slim", marker sl_codes):
//   P.sl_codes   U8   (rows, row_bytes)  each row's codes, group after group: group g's group_size codes
//   packed
//                                       LSB-first at bits[g] bits each (formats/affine.h's bitstream within
//                                       the group), so group g starts at byte Σ_{h<g} group_size·bits[h]/8
//                                       of the row and row_bytes = Σ_g group_size·bits[g]/8
//   P.sl_bits    U8   (G)                the bit width of each group, 1..8 (G = cols / group_size)
//   P.sl_scales  F16  (rows, G)          scale (≥ 2 bits) or α (1 bit) of each (row, group)
//   P.sl_zeros   U8   (rows, G)          zero-point of each (row, group): ≤ 2^bits − 1, and 0 in 1-bit groups
//   P.sl_means   F16  (rows, G1)         the mean of each (row, 1-bit group), the 1-bit groups in group order
//                                       (G1 = number of 1-bit groups). Not written when G1 = 0 (a zero-size
//                                       tensor says nothing; a reader given one of shape (rows, 0) accepts
//                                       it); required when G1 > 0.
// group_size = cols / G follows from sl_bits' length and row_bytes from the bits, so a file cannot disagree
// with itself. Exactly (8·rows·row_bytes + 24·rows·G + 16·rows·G1 + 8·G) / (rows·cols) bits per weight.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "formats/format.h"

namespace lowbit {

inline constexpr int64_t kSlimDefaultGroup = 128;

// The one definition of a SliM weight's value, from its code and the (row, group)'s parameters already
// converted to f32 (zero is read only when bits >= 2, mean only when bits == 1). Exactly this expression
// order in f32.
inline float slim_value(int bits, uint32_t code, float scale, uint8_t zero, float mean) {
  return bits == 1 ? mean + (code ? scale : -scale) : scale * (float(code) - float(zero));
}

const Format& slim_format();

struct SlimWeight final : PackedWeight {
  int64_t group_size = kSlimDefaultGroup;  // a multiple of 8 dividing cols
  const uint8_t* bits = nullptr;           // (G) 1..8
  const uint8_t* codes = nullptr;          // (rows, row_bytes())
  const uint16_t* scales = nullptr;        // fp16 (rows, G)
  const uint8_t* zeros = nullptr;          // (rows, G)
  const uint16_t* means = nullptr;         // fp16 (rows, G1); may be null when G1 == 0
  // Derived from bits and group_size (make_slim and the loader fill them; check_slim_weight verifies them):
  const int64_t* group_offset = nullptr;  // (G + 1) byte offset of group g's codes in a row; [G] = row_bytes
  const int32_t* one_index = nullptr;     // (G) column of group g in means, −1 for a group of ≥ 2 bits
  int64_t n_one_bit = 0;                  // G1
  // What lowbit owns whatever `owner` is (a loaded weight's owner is its mapping): the derived tables, every
  // buffer of a new weight, copies of misaligned sl_scales / sl_means.
  std::shared_ptr<const void> derived;

  int64_t n_groups() const { return cols / group_size; }
  size_t row_bytes() const { return size_t(group_offset[n_groups()]); }
  // Every stored bit: codes, fp16 scale and uint8 zero per (row, group), fp16 mean per (row, 1-bit group),
  // the bits table.
  double bits_per_weight() const;
  // The paper's average bit width: Σ_g bits[g]·group_size / cols (codes only).
  double mean_bits() const;
  const Format& format() const override { return slim_format(); }
};

const SlimWeight& as_slim(const PackedWeight& w);

// Throws a one-line Error naming `what` unless w is well formed: rows/cols > 0, group_size a multiple of 8
// dividing cols, every bits[g] in 1..8, the buffers present (means when G1 > 0), and the derived tables
// consistent with the bits. O(G); kernels call it before touching the bytes.
void check_slim_weight(const SlimWeight& w, std::string_view what);

// The reference dequantizer: Ŵ rows [r0, r0 + nr) into out (nr, cols), element by element with slim_value.
void slim_dequantize_rows_scalar(const SlimWeight& w, int64_t r0, int64_t nr, float* out);

// An owned weight. bits (G); codes (rows, cols) one code per byte (each must fit its group's bits); scales
// and means (rows, G) f32, rounded to fp16 here (means read only in 1-bit groups; a value not finite in fp16
// is a one-line error naming it, its row and group); zeros (rows, G), read only in ≥ 2-bit groups (≤ 2^bits −
// 1; 1-bit groups store 0).
std::shared_ptr<SlimWeight> make_slim(int64_t rows, int64_t cols, int64_t group_size, const uint8_t* bits,
                                      const uint8_t* codes, const float* scales, const uint8_t* zeros,
                                      const float* means);

}  // namespace lowbit

// Packed weight-only affine quantization (GPTQ/RTN/AWQ family), the format every weight-only method emits.
//
// A linear weight W (rows = out_features, cols = in_features) is stored as b-bit codes q ∈ [0, 2^b − 1] with
// one fp16 scale S and one integer zero-point Z per (row, group); the dequantized weight is
//     Ŵ[r][c] = S[r][g(c)] · (q[r][c] − Z[r][g(c)]),
// where g(c) = c / group_size, or g_idx[c] when act-order permuted the quantization order (GPTQ "g_idx").
// Per-channel quantization is group_size == cols (one group).
//
// Code layout: each row is an LSB-first bitstream of `cols` codes of `bits` bits, padded to a whole byte:
// 2/4/8 bits put 4/2/1 codes in a byte (lowest bits first); 3 bits put 8 codes in 3 bytes, nothing wasted.
// Zero-points are stored one per byte (uint8) — 8/group_size extra bits per weight, 0.06 at g128.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "formats/format.h"

namespace lowbit {

// "Per output channel" (one scale/zero group per row), spelled one way everywhere a group size is chosen: the
// CLI's --group, the study spec's group, quantization_config's group_size and the quantizers' options. (The
// stored weight itself has group_size == cols.)
inline constexpr int kPerChannel = -1;

// The format's entry in the format table (formats/format.h): "affine". In a checkpoint, for a linear "P"
// (e.g. model.layers.0.self_attn.q_proj), instead of P.weight:
//   P.qcodes  U8  (rows, row_bytes)   codes, LSB-first bitstream per row
//   P.scales  F16 (rows, n_groups)
//   P.qzeros  U8  (rows, n_groups)    integer zero-points
//   P.g_idx   I32 (cols)              only with act-order
// bits = row_bytes·8 / cols (the smallest b whose packed row length is row_bytes) and group = cols / n_groups
// follow from the shapes, so a file cannot disagree with itself.
const Format& affine_format();

struct AffineWeight;
// w as an AffineWeight; only for a weight whose format() is affine_format() (the format and kernel tables'
// affine entries, which are looked up by that).
const AffineWeight& as_affine(const PackedWeight& w);

struct AffineWeight final : PackedWeight {
  int bits = 4;                      // 2..8
  int64_t group_size = 0;            // divides cols; == cols for per-channel
  const uint8_t* codes = nullptr;    // (rows, row_bytes())
  const uint16_t* scales = nullptr;  // fp16 (rows, n_groups())
  const uint8_t* zeros = nullptr;    // (rows, n_groups())
  const int32_t* g_idx = nullptr;    // (cols) or nullptr

  const Format& format() const override { return affine_format(); }

  int64_t n_groups() const { return cols / group_size; }
  size_t row_bytes() const { return (size_t(cols) * size_t(bits) + 7) / 8; }
  int64_t group_of(int64_t c) const { return g_idx ? g_idx[c] : c / group_size; }
  // Storage bits per weight, counting codes, scales (16 bits) and zero-points (8 bits) per group.
  double bits_per_weight() const {
    return (double(row_bytes()) * 8 * rows + double(rows) * n_groups() * 24 + (g_idx ? 32.0 * cols : 0)) /
           (double(rows) * cols);
  }
};

// The code of column c in a packed row (scalar reference decoder).
inline uint32_t packed_code(const uint8_t* row, int bits, int64_t c) {
  const uint64_t bit = uint64_t(c) * uint64_t(bits);
  const uint64_t byte = bit / 8, shift = bit % 8;
  uint32_t v = row[byte];
  if (shift + uint64_t(bits) > 8) v |= uint32_t(row[byte + 1]) << 8;
  return (v >> shift) & ((1u << bits) - 1);
}

// Sets the code of column c in a packed row (the row must start zeroed).
inline void pack_code(uint8_t* row, int bits, int64_t c, uint32_t q) {
  const uint64_t bit = uint64_t(c) * uint64_t(bits);
  const uint64_t byte = bit / 8, shift = bit % 8;
  const uint32_t v = q << shift;
  row[byte] |= uint8_t(v);
  if (shift + uint64_t(bits) > 8) row[byte + 1] |= uint8_t(v >> 8);
}

// Throws lowbit::Error (one line, naming `what`) unless w is well formed: bits in 2..8, rows/cols > 0,
// group_size > 0 dividing cols, non-null codes/scales/zeros, every g_idx entry in [0, n_groups()).
// Kernels call it before touching the bytes, so a malformed weight never causes an out-of-bounds access.
void check_affine_weight(const AffineWeight& w, std::string_view what);

// The reference dequantizer (scalar; the format table's dequantize_ref): Ŵ rows [r0, r0 + nr) into out
// (nr, cols). Every affine kernel is tested against it.
void affine_dequantize_rows_scalar(const AffineWeight& w, int64_t r0, int64_t nr, float* out);

}  // namespace lowbit

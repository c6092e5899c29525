// Dual binarization: DB-LLM's "Flexible Dual Binarization" (FDB; Chen et al. 2024, "DB-LLM: Accurate
// Dual-Binarization for Efficient LLMs", arXiv 2402.11960, §3.2). A 2-bit weight is split into two binary
// planes with their own scales, so inference needs no multiplications inside a group, only two bitplane
// "masked sums" of the input:
//
// A linear weight W (rows = out_features, cols = in_features) is cut, row by row, into groups of group_size
// consecutive weights (128 by default). Group g of row r has two scales α1, α2 (fp16) and every weight two
// bits b1, b2 ∈ {0, 1}; the dequantized weight is, in f32 arithmetic,
//     Ŵ[r][c] = (b1 ? α1 : 0) + (b2 ? α2 : 0)
// so a group takes one of the four values {0, α1, α2, α1 + α2}, and y = Σ_g α1·(Σ_{b1=1} x) + α2·(Σ_{b2=1}
// x). DB-LLM keeps b ∈ {0, 1} (not ±1) because the sparse planes are what its "deviation-aware distillation"
// trains; an affine 2-bit grid S·(q − Z) is exactly such a pair of planes (see dualbin_from_affine), which is
// how the paper initialises FDB.
//
// Bit layout: each plane is (rows, cols/8) bytes, LSB-first, bit c % 8 of byte c / 8 (cols % 8 == 0, so a row
// starts on a byte; group_size % 8 == 0, so a group does too).
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>

#include "formats/affine.h"
#include "formats/format.h"

namespace lowbit {

inline constexpr int64_t kDualBinDefaultGroup = 128;  // the group of the w2g128 affine weights it replaces

// The format's entry in the format table (formats/format.h): "dualbin". In a checkpoint, for a linear "P":
//   P.bplane1  U8  (rows, cols/8)        b1 bits (the marker tensor)
//   P.bplane2  U8  (rows, cols/8)        b2 bits
//   P.bscales  F16 (rows, n_groups·2)    α1 then α2 of each group
// group_size = cols / (bscales.shape[1] / 2) follows from the shapes.
const Format& dualbin_format();

struct DualBinWeight final : PackedWeight {
  int64_t group_size = kDualBinDefaultGroup;  // divides cols, multiple of 8
  const uint8_t* plane1 = nullptr;            // (rows, cols/8) b1 bits, LSB-first: bit (c % 8) of byte c/8
  const uint8_t* plane2 = nullptr;            // (rows, cols/8) b2 bits, same layout
  const uint16_t* scales = nullptr;           // fp16 (rows, n_groups, 2): α1 then α2 of each group

  int64_t n_groups() const { return cols / group_size; }
  size_t row_bytes() const { return size_t(cols / 8); }
  // Every stored bit per weight: 2 plane bits, plus 2·16 scale bits per group: exactly 2 + 32/group_size.
  double bits_per_weight() const { return 2.0 + 32.0 / double(group_size); }
  const Format& format() const override { return dualbin_format(); }
};

// w as a DualBinWeight; only for a weight whose format() is dualbin_format().
const DualBinWeight& as_dualbin(const PackedWeight& w);

// Throws lowbit::Error (one line, naming `what`) unless w is well formed: rows > 0, cols a positive multiple
// of 8, group_size a positive multiple of 8 dividing cols, both planes and the scales present. Kernels call
// it before touching the bytes.
void check_dualbin_weight(const DualBinWeight& w, std::string_view what);

// The reference dequantizer (scalar; the format table's dequantize_ref): Ŵ rows [r0, r0 + nr) into out
// (nr, cols). Every dual-binarization kernel is tested against it.
void dualbin_dequantize_rows_scalar(const DualBinWeight& w, int64_t r0, int64_t nr, float* out);

// An owned weight from per-weight bits b1, b2 (bytes 0 or 1, (rows, cols) row-major) and per-group scales
// alpha1, alpha2 ((rows, n_groups) f32), rounded to fp16 to nearest even. A scale that is not finite in fp16
// (overflow, ∞, NaN) or a bit other than 0/1 is a one-line error.
std::shared_ptr<DualBinWeight> make_dualbin(int64_t rows, int64_t cols, int64_t group_size, const uint8_t* b1,
                                            const uint8_t* b2, const float* alpha1, const float* alpha2);

// The exact dual binarization of a 2-bit affine weight (formats/affine.h; integer Z ∈ [0, 3], no g_idx,
// group_size % 8 == 0), same groups: DB-LLM's initialisation of FDB "from 2-bit uniform quantization" (§3.2),
// generalised to every zero-point. Its dequantization equals the affine one (bitwise for S > 0; see the
// derivation in dualbin.cpp). A scale whose double overflows fp16 is a one-line error.
std::shared_ptr<DualBinWeight> dualbin_from_affine(const AffineWeight& w);

}  // namespace lowbit

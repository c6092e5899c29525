// Partial binarization: PB-LLM (Shang, Yuan, Wu, Dong 2023, "PB-LLM: Partially Binarized Large Language
// Models", arXiv 2310.00034, §3.2–3.4). Most weights of a linear are binarized, a small salient fraction is
// kept at high precision (8 bits):
//   binarized weight of row r, group g:  Ŵ = μ + α   (sign bit 1)   or   μ − α   (sign bit 0)
//   salient weight of row r:             Ŵ = S_r·(q − Z_r)          (q an 8-bit code, per-row asymmetric
//   grid)
// with (μ, α) per (row, group of group_size columns) in fp16 and (S, Z) per row in f32. Upstream
// (hahnyuan/PB-LLM gptq_pb/) only simulates this in fp16; here it is stored in its bits:
//
//   P.pb_signs   U8  (rows, cols/8)   sign bits, LSB-first (bit c % 8 of byte c / 8); 0 at salient positions
//                                     (the marker tensor)
//   P.pb_binpar  F16 (rows, 2·G)      μ then α of each group (G = cols / group_size)
//   P.pb_rowpar  F32 (rows, 2)        S then Z of each row's salient grid
//   P.pb_values  U8  (nnz)            the salient weights' codes, row-major, by column within a row
//   and the salient mask, whichever of the two encodings is smaller:
//   P.pb_bitmap  U8  (rows, cols/8)   1 = salient: 1 bit per weight, or
//   P.pb_pos     U8  (nnz)            each salient weight's column within its group, ascending per group,
//   P.pb_counts  I16 (rows, G)        and the number of salient weights of each (row, group):
//                                     8·nnz + 16·rows·G bits — smaller below ~11% salient weights at g128.
// In memory the mask is always the position list (a bitmap is converted at load), which is what the GEMV
// walks: salient weights are a sparse correction to the binarized masked sums (kernels/pbllm_matmul.h).
// group_size: a multiple of 32 (whole 32-bit words of sign bits per group), at most 256 (positions fit a
// byte); it divides cols.
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "formats/format.h"

namespace lowbit {

inline constexpr int64_t kPbllmMaxGroup = 256;

const Format& pbllm_format();

struct PbllmWeight final : PackedWeight {
  int64_t group_size = 128;
  const uint8_t* signs = nullptr;      // (rows, cols/8)
  const uint16_t* binpar = nullptr;    // fp16 (rows, G, 2): μ, α
  const float* rowpar = nullptr;       // (rows, 2): S, Z
  const uint16_t* counts = nullptr;    // (rows, G)
  const uint8_t* pos = nullptr;        // (nnz)
  const uint8_t* values = nullptr;     // (nnz)
  const int64_t* row_start = nullptr;  // (rows + 1): first salient entry of each row (derived from counts)
  int64_t nnz = 0;
  // What lowbit derived and owns whatever `owner` is (a spilled or loaded weight's owner is its mapping):
  // row_start, the position list of a bitmap file, the bitmap to save, copies of misaligned tensors.
  std::shared_ptr<const void> derived;
  // The stored mask encoding (the smaller one; see above): true = pb_bitmap, false = pb_pos + pb_counts.
  bool bitmap_smaller() const;

  int64_t n_groups() const { return cols / group_size; }
  size_t row_bytes() const { return size_t(cols / 8); }
  // Every stored bit: sign plane, mask (the smaller encoding), 8-bit values, 2 fp16 per group, 2 f32 per row.
  double bits_per_weight() const;
  const Format& format() const override { return pbllm_format(); }
};

const PbllmWeight& as_pbllm(const PackedWeight& w);

// Throws a one-line Error naming `what` unless w's shape rules hold and its buffers are present.
void check_pbllm_weight(const PbllmWeight& w, std::string_view what);

// The reference dequantizer: Ŵ rows [r0, r0 + nr) into out (nr, cols), in f32: μ + α or μ − α (upstream's
// sign(w − μ)·α + μ), S·(q − Z) at salient positions.
void pbllm_dequantize_rows_scalar(const PbllmWeight& w, int64_t r0, int64_t nr, float* out);

// An owned weight. salient (rows, cols) bytes 0/1; sign (rows, cols) bytes 0/1 (ignored where salient);
// codes (rows, cols) salient codes (read where salient, must be ≤ 255); mu, alpha (rows, G) rounded to fp16;
// S, Z (rows). A μ or α that is not finite in fp16 is a one-line error.
std::shared_ptr<PbllmWeight> make_pbllm(int64_t rows, int64_t cols, int64_t group_size,
                                        const uint8_t* salient, const uint8_t* sign, const uint8_t* codes,
                                        const float* mu, const float* alpha, const float* S, const float* Z);

}  // namespace lowbit

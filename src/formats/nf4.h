// NF4: QLoRA's 4-bit NormalFloat (Dettmers et al. 2023, "QLoRA", §3) as bitsandbytes stores it
// (functional.quantize_4bit(quant_type="nf4", blocksize=64)), with its double quantization of the block
// scales (compress_statistics=True, QLoRA §3 "Double Quantization") and, optionally, IR-QLoRA's per-block
// shift τ (Qin et al. 2024, "Accurate LoRA-Finetuning Quantization of LLMs via Information Retention", §3.1
// "Information Calibration Quantization"; htqin/IR-QLoRA utils.py `nf4_quant`, `IRQLoraLinear4bit.forward`).
//
// A linear weight W (rows = out_features, cols = in_features) is flattened row-major and cut into blocks of
// 64 consecutive weights (lowbit requires cols % 64 == 0, so a block never straddles two rows and any row
// range dequantizes from whole blocks; LLaMA's widths are multiples of 64). Block b has a scale A_b (its
// absmax) and each weight a 4-bit code q into the 16 NF4 values; the dequantized weight is, in f32
// arithmetic,
//     Ŵ = NF4[q]·A_b                       (bitsandbytes dequantize_4bit: dDequantizeNF4(q) * absmax)
//     Ŵ = NF4[q]·A_b + τ_b                  with ICQ (IRQLoraLinear4bit.forward: fp_B + tau)
// A_b is either stored as f32 or double-quantized:
//     A_b = map[a_b]·A2_{b/256} + offset     (dequantize_blockwise(absmax_q, state2) + offset)
// where map is bitsandbytes' signed 8-bit dynamic map (create_dynamic_map), a_b a uint8 index, A2 one f32
// scale per 256 blocks (the last group may be shorter) and offset one f32 for the tensor. ICQ's τ is stored
// the same way without an offset: τ_b = map[t_b]·T2_{b/256} (IR-QLoRA nf4_quant: tau1, tau2).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string_view>

#include "formats/format.h"

namespace lowbit {

inline constexpr int64_t kNf4Block = 64;        // weights per block scale (bitsandbytes blocksize=64)
inline constexpr int64_t kNf4SuperBlock = 256;  // block scales (and τs) per f32 second-level scale

// The 16 NF4 values, index = code (bitsandbytes get_4bit_type("nf4"); QLoRA eq. 4, normalised to [-1, 1]).
// Every one is an exact f32.
inline constexpr float kNf4Values[16] = {-1.0f,
                                         -0.6961928009986877f,
                                         -0.5250730514526367f,
                                         -0.39491748809814453f,
                                         -0.28444138169288635f,
                                         -0.18477343022823334f,
                                         -0.09105003625154495f,
                                         0.0f,
                                         0.07958029955625534f,
                                         0.16093020141124725f,
                                         0.24611230194568634f,
                                         0.33791524171829224f,
                                         0.44070982933044434f,
                                         0.5626170039176941f,
                                         0.7229568362236023f,
                                         1.0f};

// The 15 decision thresholds of bitsandbytes' dQuantizeNF4 (csrc/kernels.cu, and the CPU twin), its literals
// as the compiler rounds them to f32. Threshold k is the midpoint of values k and k+1 written as the shortest
// decimal of the double midpoint; where that midpoint falls exactly halfway between two floats the decimal,
// not round-to-even, decides the side, and for k = 0, 8, 12, 14 it picks the odd one (tests check both).
inline constexpr float kNf4Thresholds[15] = {
    -0.8480964004993439f,  -0.6106329262256622f,  -0.4599952697753906f,   -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f,   0.2035212516784668f,   0.2920137718319893f,    0.3893125355243683f,
    0.5016634166240692f,   0.6427869200706482f,   0.8614784181118011f};

// The NF4 code of a value already scaled by 1/absmax: bitsandbytes' dQuantizeNF4 decision tree, i.e. the
// number of thresholds x exceeds with `x > t`. An x exactly on a midpoint takes the lower code; NaN (0·∞ for
// an all-zero block, whose reciprocal absmax is ∞) takes code 0, as the CUDA kernel does. (bitsandbytes'
// pure-PyTorch fallback takes argmin |x − value| instead, which can differ within an ulp of a midpoint; the
// CUDA/CPU kernels that QLoRA and IR-QLoRA ran use this tree.)
inline uint8_t nf4_code(float x) {
  int q = x > kNf4Thresholds[7] ? 8 : 0;
  q += x > kNf4Thresholds[q + 3] ? 4 : 0;
  q += x > kNf4Thresholds[q + 1] ? 2 : 0;
  q += x > kNf4Thresholds[q] ? 1 : 0;
  return uint8_t(q);
}

// x·y rounded to f32 before anything is added to it. Upstream (PyTorch, CUDA without fast-math, NumPy) rounds
// every product; GCC, by default in C++ (-ffp-contract=fast), would fuse a product and a later sum into one
// FMA wherever the target has FMA (the AVX2 kernels), and the SIMD and scalar dequantizers would then
// disagree in the last bit. A volatile store is a barrier every compiler respects.
inline float rounded_product(float x, float y) {
  volatile float p = x * y;
  return p;
}

// out[16·i + k] = NF4[k]·a[i] for n scales and the 16 codes, each product rounded to f32. Out of line on
// purpose: a caller that adds ICQ's τ to these cannot have the compiler fuse the product and the sum (see
// rounded_product), at the cost of one call instead of 16 volatile stores per block.
[[gnu::noinline]] void nf4_scaled_values(const float* a, int64_t n, float* out);

// bitsandbytes' functional.create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8) (Dettmers
// 2016, "8-Bit Approximations for Parallelism in Deep Learning"): 256 distinct f32 values in ascending order,
// from -0.99296875 to 1 with 0 at index 127.
const std::array<float, 256>& dynamic_map();
// The index bitsandbytes' blockwise 8-bit quantizer gives x (already scaled by 1/absmax):
// kQuantizeBlockwise's dQuantize<0>, a 7-step binary search from index 127 followed by a comparison with the
// f32 midpoint (lower + upper)·0.5 of the bracketing entries; a tie goes to the last probe. Used for the
// double-quantized block scales.
uint8_t dynamic_map_code(float x);
// argmin_i |x − map[i]| in f32, the lowest index on ties (NaN: 0): IR-QLoRA's quantize_tensor, used for τ.
uint8_t dynamic_map_nearest(float x);

// The format's entry in the format table (formats/format.h): "nf4". In a checkpoint, for a linear "P":
//   P.nf4_codes         U8  (rows, cols/2)  two codes per byte, the first (even column) in the HIGH nibble
//   P.nf4_absmax        F32 (nblocks)       block scales, without double quantization, or
//   P.nf4_absmax_q      U8  (nblocks)       with it: dynamic-map indices of (A_b − offset)/A2
//   P.nf4_absmax2       F32 (nsuper)        A2, one per 256 blocks
//   P.nf4_absmax_offset F32 ()              offset
//   P.nf4_tau_q         U8  (nblocks)       ICQ only: dynamic-map indices of τ_b/T2
//   P.nf4_tau2          F32 (nsuper)        ICQ only: T2
// with nblocks = rows·cols/64 and nsuper = ⌈nblocks/256⌉. One format covers QLoRA's and IR-QLoRA's weights:
// τ is one more per-block term of the same dequantization, so both share one set of kernels.
const Format& nf4_format();

struct Nf4Weight;
// w as an Nf4Weight; only for a weight whose format() is nf4_format().
const Nf4Weight& as_nf4(const PackedWeight& w);

struct Nf4Weight final : PackedWeight {
  const uint8_t* codes = nullptr;     // (rows, cols/2)
  const float* absmax = nullptr;      // (nblocks), or null when double-quantized
  const uint8_t* absmax_q = nullptr;  // (nblocks), double quantization
  const float* absmax2 = nullptr;     // (nsuper)
  float absmax_offset = 0;            // the mean of the blocks' absmax before double quantization
  const uint8_t* tau_q = nullptr;     // (nblocks), ICQ only
  const float* tau2 = nullptr;        // (nsuper)

  const Format& format() const override { return nf4_format(); }

  bool double_quant() const { return absmax_q != nullptr; }
  bool icq() const { return tau_q != nullptr; }
  int64_t nblocks() const { return rows * cols / kNf4Block; }
  int64_t nsuper() const { return (nblocks() + kNf4SuperBlock - 1) / kNf4SuperBlock; }
  size_t row_bytes() const { return size_t(cols / 2); }

  // A_b: two f32 roundings (product, then sum), exactly as bitsandbytes' dequantize_blockwise then `+=
  // offset`.
  float block_absmax(int64_t b) const {
    if (!absmax_q) return absmax[b];
    return rounded_product(dynamic_map()[absmax_q[b]], absmax2[b / kNf4SuperBlock]) + absmax_offset;
  }
  // τ_b (only with ICQ): map[t_b]·T2, IRQLoraLinear4bit.forward's dequantize_tensor(tau_quant) * tau_absmax.
  float block_tau(int64_t b) const {
    return rounded_product(dynamic_map()[tau_q[b]], tau2[b / kNf4SuperBlock]);
  }
  // block_absmax and block_tau of blocks [b0, b0 + n) into a (and t, with ICQ), bitwise the same values; what
  // the GEMV reads once per row instead of per block.
  void block_scales(int64_t b0, int64_t n, float* a, float* t) const;
  // The 16 weights block b can hold, out[k] = NF4[k]·A_b (+ τ_b): what every dequantizer looks codes up in.
  void block_values(int64_t b, float* out16) const {
    const float a = block_absmax(b);
    nf4_scaled_values(&a, 1, out16);
    if (!icq()) return;
    const float tau = block_tau(b);
    for (int k = 0; k < 16; ++k) out16[k] = out16[k] + tau;
  }

  // Every stored bit per weight: 4 per code, plus 8 per block and 32 per 256 blocks and 32 for the offset
  // with double quantization (32 per block without), plus 8 per block and 32 per 256 blocks for τ.
  double bits_per_weight() const {
    const double nb = double(nblocks()), ns = double(nsuper());
    double bits = 4.0 * double(rows) * double(cols);
    bits += double_quant() ? 8 * nb + 32 * ns + 32 : 32 * nb;
    if (icq()) bits += 8 * nb + 32 * ns;
    return bits / (double(rows) * double(cols));
  }
};

// The code of column c of a packed row: the high nibble for even c (bitsandbytes packs `q[2i] << 4 |
// q[2i+1]`).
inline uint8_t nf4_packed_code(const uint8_t* row, int64_t c) {
  const uint8_t byte = row[c / 2];
  return c % 2 == 0 ? uint8_t(byte >> 4) : uint8_t(byte & 15);
}

// Throws lowbit::Error (one line, naming `what`) unless w is well formed: rows > 0, cols a positive multiple
// of 64, codes present, exactly one of absmax / (absmax_q, absmax2), and tau_q with tau2. Kernels call it
// before touching the bytes.
void check_nf4_weight(const Nf4Weight& w, std::string_view what);

// The reference dequantizer (scalar; the format table's dequantize_ref): Ŵ rows [r0, r0 + nr) into out
// (nr, cols). Every NF4 kernel is tested against it.
void nf4_dequantize_rows_scalar(const Nf4Weight& w, int64_t r0, int64_t nr, float* out);

}  // namespace lowbit

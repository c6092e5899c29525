// Conversion between AffineWeight (formats/affine.h) and the Hugging Face AutoGPTQ checkpoint layout
// (AutoGPTQ QuantLinear, qlinear_cuda_old / qlinear_cuda / exllama, `quantize_config.json`), for 2, 3, 4, 8
// bits.
//
// Tensors of one linear layer with in_features = I (our cols), out_features = O (our rows), G groups:
//   qweight int32 (I·b/32, O)   codes packed along the INPUT dimension: column o of qweight, read as
//   consecutive
//                               32-bit words, is an LSB-first bitstream of the I codes W_q[o][0..I).
//                               2/4/8 bits: word k holds inputs 32k/b .. 32k/b + 32/b − 1, input j at bit
//                               b·j. 3 bits: 32 inputs in 3 words — inputs 0..9 at bits 3j of word 0, input
//                               10 split (bits 30-31 of word 0 = its low 2 bits, bit 0 of word 1 = its high
//                               bit), inputs 11..20 at bits 3j+1 of word 1, input 21 split (bit 31 of word 1,
//                               bits 0-1 of word 2), inputs 22..31 at bits 3j+2 of word 2. That is exactly a
//                               contiguous 96-bit LSB-first stream, i.e. our row bitstream with its bytes
//                               taken 4 at a time as little-endian words. Hence I·b must be a multiple of 32
//                               (I % 32 == 0 at 3 bits).
//   qzeros  int32 (G, O·b/32)   zero-points packed the same way along the OUTPUT dimension (row g of qzeros
//   is
//                               the bitstream of the O zero-points of group g).
//   scales  fp16  (G, O)        (ours is (O, G): transposed)
//   g_idx   int32 (I)           group of each input column (act-order permutes it; otherwise i / group_size).
// Dequantization: W[o][i] = scales[g_idx[i]][o] · (q[i][o] − zero[g_idx[i]][o]).
//
// Zero-point convention. AutoGPTQ's pack() stores `zeros -= 1`, i.e. the zero-point MINUS ONE, and every
// AutoGPTQ kernel adds 1 back after unpacking (checkpoint_format "gptq", "v1"). GPTQModel's "gptq_v2" stores
// the zero-point itself. v1 cannot store Z = 0 (it wraps to 2^b − 1, which AutoGPTQ decodes as 2^b), so
// exporting a Z = 0 as v1 is an error; importing v1 decodes stored s as s + 1 exactly as AutoGPTQ does (so a
// stored 2^b − 1 becomes Z = 2^b, representable in our uint8 zero-points except at 8 bits, which is an
// error).
#pragma once
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "formats/affine.h"

namespace lowbit {

enum class GptqZeros { kMinusOne, kExact };  // "gptq" (v1: stores Z − 1), "gptq_v2" (stores Z)

struct GptqTensors {
  int bits = 4;
  int64_t in_features = 0, out_features = 0;
  int64_t group_size = 0;        // columns per group (in_features for per-channel; AutoGPTQ writes −1 then)
  std::vector<int32_t> qweight;  // (in_features·bits/32, out_features)
  std::vector<int32_t> qzeros;   // (n_groups, out_features·bits/32)
  std::vector<uint16_t> scales;  // fp16 (n_groups, out_features)
  std::vector<int32_t> g_idx;    // (in_features)
};

// Borrowed tensors, e.g. straight from a mapped safetensors file. group_size −1 means per-channel.
struct GptqView {
  int bits = 4;
  int64_t in_features = 0, out_features = 0, group_size = 0;
  std::span<const int32_t> qweight, qzeros;
  std::span<const uint16_t> scales;
  std::span<const int32_t> g_idx;  // may be empty: groups are i / group_size
};

// Throws lowbit::Error if w cannot be expressed in the layout (bits not 2/3/4/8, in or out features not
// packable into whole int32 words, a zero-point the convention cannot store).
GptqTensors to_gptq(const AffineWeight& w, GptqZeros zeros = GptqZeros::kMinusOne);

// Validates every size, bit width, group size, g_idx entry, zero-point and scale (finite) and returns an
// owned weight (its owner holds the buffers). g_idx is kept only when it differs from i / group_size, so
// plain checkpoints take the fast kernels. `what` names the tensor in error messages.
AffineWeight from_gptq(const GptqView& t, GptqZeros zeros, std::string_view what);
AffineWeight from_gptq(const GptqTensors& t, GptqZeros zeros, std::string_view what);

}  // namespace lowbit

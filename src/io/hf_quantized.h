// Hugging Face checkpoints quantized by other tools, read into lowbit's own affine format (formats/affine.h)
// at load time, so that every command (ppl, eval, generate, info) sees an ordinary packed checkpoint:
//
//   GPTQ  (AutoGPTQ, GPTQModel, optimum): quantization_config {"quant_method": "gptq", "bits": 2|3|4|8,
//         "group_size": g or -1, "desc_act", "sym", "checkpoint_format": "gptq" | "gptq_v2"} in config.json,
//         or the same keys in a separate quantize_config.json (old AutoGPTQ); per linear P the tensors
//         P.qweight I32 (I·b/32, O), P.qzeros I32 (G, O·b/32), P.scales F16 (G, O), P.g_idx I32 (I)
//         (optional) and P.bias (absent or all zeros). The layout and the zero-point conventions are
//         formats/gptq_layout.h's.
//   AWQ   (AutoAWQ GEMM): quantization_config {"quant_method": "awq", "version": "gemm", "bits": 4,
//         "group_size", "zero_point": true}; P.qweight I32 (I, O/8) packed along the OUTPUT dimension, eight
//         4-bit codes per word in the order [0, 2, 4, 6, 1, 3, 5, 7] (nibble j of word w holds output
//         8w + order[j]), P.qzeros I32 (G, O/8) packed the same way (zero-points as they are), P.scales F16
//         (G, O).
//
// The codes, scales and zero-points are copied bit for bit into the affine layout (nothing is dequantized);
// the tensors P.qcodes / P.scales / P.qzeros (/ P.g_idx) replace the source ones, and quantization_config
// gains "format": "affine" beside its own keys.
#pragma once
#include <string>

#include "io/checkpoint.h"

namespace lowbit {

// When c (loaded from directory `dir`) is such a checkpoint, converts its linears in place, sets
// c.source_quantization (e.g. "gptq 4-bit g128 desc_act (AutoGPTQ layout, checkpoint_format gptq)") and
// returns true; otherwise leaves c alone and returns false. Errors are one line naming the file and tensor:
// a missing or inconsistent tensor, an unknown checkpoint_format or version, bits the layout does not have,
// a zero-point the affine format cannot hold, a non-zero bias.
bool convert_hf_quantized(Checkpoint& c, const std::string& dir);

}  // namespace lowbit

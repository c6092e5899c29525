// How a packed QuantizedWeight (formats/quantized.h) is stored in a lowbit checkpoint's safetensors, next to
// the full-precision tensors: for a linear "P" (e.g. model.layers.0.self_attn.q_proj) instead of P.weight
//   P.qcodes  U8  (rows, row_bytes)   codes, LSB-first bitstream per row
//   P.scales  F16 (rows, n_groups)
//   P.qzeros  U8  (rows, n_groups)    integer zero-points
//   P.g_idx   I32 (cols)              only with act-order
// bits = row_bytes·8 / cols (the smallest b whose packed row length is row_bytes) and group = cols / n_groups
// follow from the shapes, so a file cannot disagree with itself.
#pragma once
#include <map>
#include <memory>
#include <string>

#include "formats/quantized.h"
#include "io/checkpoint.h"

namespace lowbit {

bool has_quantized_linear(const Checkpoint& ckpt, const std::string& prefix);

// Validates the tensors of `prefix` against the expected (rows, cols) and returns a view into them (owner
// keeps nothing: the Checkpoint must outlive it). Errors name the file and tensor.
std::shared_ptr<QuantizedWeight> quantized_linear_view(const Checkpoint& ckpt, const std::string& prefix,
                                                       int64_t rows, int64_t cols);

// Adds the views of w's buffers under `prefix` to `out` (for write_safetensors); w must outlive `out`'s use.
void add_quantized_tensors(std::map<std::string, TensorView>& out, const std::string& prefix,
                           const QuantizedWeight& w);

}  // namespace lowbit

// How packed linears (formats/format.h) are found in and written to a lowbit checkpoint's safetensors, next
// to the full-precision tensors: a linear "P" (e.g. model.layers.0.self_attn.q_proj) has either P.weight
// (dense) or its format's tensors P.<suffix>. The format of each packed linear is what quantization_config
// names: "linear_formats" {P: name} when the model mixes formats, else "format"; a checkpoint that names no
// known format (lowbit's first checkpoints wrote "lowbit-packed-v1") is recognised by the format's marker
// tensor.
#pragma once
#include <map>
#include <memory>
#include <string>

#include "formats/format.h"
#include "io/checkpoint.h"

namespace lowbit {

// The format storing linear `prefix`, or null when it is dense (P.weight). Throws a one-line error when
// quantization_config names a format this build does not know.
const Format* packed_format_of(const Checkpoint& ckpt, const std::string& prefix);

// Validates the tensors of `prefix` against the expected (rows, cols) and returns a view into them (owner
// keeps nothing: the Checkpoint must outlive it). Errors name the file and tensor.
std::shared_ptr<PackedWeight> packed_linear_view(const Checkpoint& ckpt, const std::string& prefix,
                                                 int64_t rows, int64_t cols);

// Adds the views of w's buffers under `prefix` to `out` (for write_safetensors); w must outlive `out`'s use.
void add_packed_tensors(std::map<std::string, TensorView>& out, const std::string& prefix,
                        const PackedWeight& w);

}  // namespace lowbit

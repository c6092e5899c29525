// Writes a LlamaModel — full precision, fake-quantized or packed — as a Hugging Face-style directory lowbit
// loads back: config.json (the source config + quantization_config), model.safetensors (packed linears as
// described in io/packed_tensors.h) and the tokenizer files of the source model.
#pragma once
#include <string>

#include "core/json.h"
#include "model/llama.h"

namespace lowbit {

// Returns the bytes written to model.safetensors.
uint64_t save_model(const LlamaModel& model, const std::string& out_dir, const Json& quantization_config);

}  // namespace lowbit

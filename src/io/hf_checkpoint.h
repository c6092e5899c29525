// A Hugging Face LLaMA checkpoint directory: config.json plus model.safetensors, or shards listed in
// model.safetensors.index.json ({"weight_map": {tensor name: shard file}}).
#pragma once
#include <string>

#include "io/checkpoint.h"

namespace lowbit {

// Tensors keep their HF names (the canonical ones); GPTQ and AWQ layouts are converted to lowbit's affine
// tensors (io/hf_quantized.h). format "hf-safetensors". Does not check shapes (see
// validate_llama_tensors).
Checkpoint load_hf_checkpoint(const std::string& dir);

}  // namespace lowbit

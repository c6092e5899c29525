// The one writer of config.json for the checkpoints lowbit makes (model/save.h's save_model and
// model/synth.h's synth_checkpoint). io/hf_config.h reads it back.
#pragma once
#include <string>

#include "core/json.h"
#include "io/model_config.h"

namespace lowbit {

// Writes dir/config.json (atomically): transformers' LlamaConfig keys for c — shape, rms_norm_eps, RoPE theta
// and scaling (null when none), context, tied embeddings, BOS and EOS ids (one id as a number, several as a
// list) — plus the keys of `extra` (an object): each caller's own, e.g. quantization_config.
// c.rope_style must be RotateHalf (HF's layout); c.quantization_config is not written (callers pass it in
// `extra` when they mean to).
void write_hf_config_json(const std::string& dir, const ModelConfig& c, const Json& extra);

}  // namespace lowbit

// Hugging Face config.json (transformers LlamaConfig) -> ModelConfig.
#pragma once
#include <string>

#include "core/json.h"
#include "io/model_config.h"

namespace lowbit {

// `path` names config.json in errors. Defaults follow transformers' LlamaConfig where a key is optional.
ModelConfig parse_hf_config(const Json& j, const std::string& path);
ModelConfig load_hf_config(const std::string& config_json_path);

}  // namespace lowbit

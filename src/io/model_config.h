// A LLaMA model's architecture and hyperparameters, whatever file format it came from (io/checkpoint.h loads
// it with the tensors; io/hf_config.h parses it from a Hugging Face config.json).
#pragma once
#include <string>
#include <vector>

#include "core/json.h"

namespace lowbit {

// How RoPE pairs the dimensions of a head. HF checkpoints rotate (x[i], x[i + d/2]); Meta's original layout,
// llama2.c and llama.cpp's GGUF (whose converter permutes q/k rows) rotate adjacent pairs (x[2i], x[2i+1]).
enum class RopeStyle { RotateHalf, Interleaved };

struct RopeScaling {
  std::string type;  // "" (none) or "llama3"
  double factor = 1, low_freq_factor = 1, high_freq_factor = 4;
  int original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture = "llama";
  int n_embd = 0, n_layer = 0, n_head = 0, n_kv_head = 0, head_dim = 0, n_ff = 0, n_vocab = 0;
  double norm_eps = 1e-5;
  double rope_theta = 10000;
  RopeScaling rope_scaling;
  RopeStyle rope_style = RopeStyle::RotateHalf;
  int max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  int bos_token_id = 1;
  std::vector<int> eos_token_ids;
  Json quantization_config;  // null for full-precision checkpoints
};

}  // namespace lowbit

// A loaded checkpoint in one canonical form, whatever the file format: the model config and the tensors under
// Hugging Face LLaMA names, all views into memory that `owners` keeps alive (mmaps, or converted buffers).
//
// Canonical names and shapes (PyTorch order):
//   model.embed_tokens.weight                       (n_vocab, n_embd)
//   model.layers.{i}.input_layernorm.weight         (n_embd)
//   model.layers.{i}.self_attn.q_proj.weight        (n_head*head_dim, n_embd)
//   model.layers.{i}.self_attn.k_proj.weight        (n_kv_head*head_dim, n_embd)
//   model.layers.{i}.self_attn.v_proj.weight        (n_kv_head*head_dim, n_embd)
//   model.layers.{i}.self_attn.o_proj.weight        (n_embd, n_head*head_dim)
//   model.layers.{i}.post_attention_layernorm.weight (n_embd)
//   model.layers.{i}.mlp.gate_proj.weight           (n_ff, n_embd)
//   model.layers.{i}.mlp.up_proj.weight             (n_ff, n_embd)
//   model.layers.{i}.mlp.down_proj.weight           (n_embd, n_ff)
//   model.norm.weight                               (n_embd)
//   lm_head.weight                                  (n_vocab, n_embd)   absent when tie_word_embeddings
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/tensor.h"

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

struct Checkpoint {
  std::string path;    // file or directory it was loaded from
  std::string format;  // "hf-safetensors", "gguf", "llama2c"
  ModelConfig config;
  std::map<std::string, TensorView> tensors;
  std::vector<std::shared_ptr<const void>> owners;

  bool has(const std::string& name) const { return tensors.count(name) != 0; }
  const TensorView& get(const std::string& name) const;  // throws "<path>: missing tensor <name>"
};

// Dispatch on what `path` is: a directory with config.json (HF), a *.gguf file, or a llama2.c *.bin file.
Checkpoint load_checkpoint(const std::string& path);

// Checks that every tensor a LLaMA forward needs is present with a float dtype and the shape the config
// implies; throws "<file>: tensor <name> has shape (a, b), config expects (c, d)" and the like.
void validate_llama_tensors(const Checkpoint& ckpt);

}  // namespace lowbit

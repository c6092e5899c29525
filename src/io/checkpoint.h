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

#include "core/tensor.h"
#include "io/model_config.h"

namespace lowbit {

struct Checkpoint {
  std::string path;    // file or directory it was loaded from
  std::string format;  // "hf-safetensors", "gguf", "llama2c"
  // Set when the file's quantized linears came in another tool's layout and were converted at load
  // (io/hf_quantized.h), e.g. "gptq 4-bit g128 desc_act sym (AutoGPTQ layout, checkpoint_format gptq)".
  std::string source_quantization;
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

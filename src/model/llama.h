// LLaMA forward pass in fp32 arithmetic over f32/f16/bf16 (and, later, packed quantized) weights.
//
// Shapes: n = tokens in this call, d = n_embd, hd = head_dim, H = n_head, Hkv = n_kv_head, f = n_ff, V = n_vocab.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "io/checkpoint.h"

namespace lowbit {

// Keys and values of every layer for one sequence, post-RoPE. Truncating (n_past = k) drops positions >= k, so
// a shared context can be computed once and several continuations scored after it.
struct KVCache {
  int max_seq = 0;
  int n_past = 0;
  int kv_dim = 0;        // Hkv * hd
  std::vector<float> k;  // (n_layer, max_seq, kv_dim)
  std::vector<float> v;  // (n_layer, max_seq, kv_dim)
  void truncate(int n) { n_past = n < n_past ? n : n_past; }
};

class LlamaModel {
 public:
  explicit LlamaModel(Checkpoint ckpt);  // validates tensors against the config; keeps the mapping alive
  ~LlamaModel();
  LlamaModel(const LlamaModel&) = delete;
  LlamaModel& operator=(const LlamaModel&) = delete;

  const ModelConfig& config() const;
  const Checkpoint& checkpoint() const;

  KVCache new_cache(int max_seq) const;

  // Runs tokens at positions [cache.n_past, cache.n_past + n) and appends their keys/values to the cache.
  // logits receives (n - first_logit_row, V) rows: the next-token logits of tokens first_logit_row..n-1.
  // Pass first_logit_row = n (and logits = nullptr) to only fill the cache.
  void forward(std::span<const int32_t> tokens, KVCache& cache, float* logits, int first_logit_row = 0) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lowbit

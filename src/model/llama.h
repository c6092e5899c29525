// LLaMA forward pass in fp32 arithmetic over f32/f16/bf16 or packed (formats/format.h) weights, through
// kernels/ops.h only: each linear is a kernels/linear.h Linear, whose optional input transform ops::linear
// applies, so methods that smooth or quantize activations need no change here.
//
// Shapes: n = tokens in this call, d = n_embd, hd = head_dim, H = n_head, Hkv = n_kv_head, f = n_ff, V =
// n_vocab.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/sys.h"
#include "io/checkpoint.h"
#include "kernels/linear.h"

namespace lowbit {

// Keys and values of every layer for one sequence, post-RoPE. Truncating (n_past = k) drops positions >= k,
// so a shared context can be computed once and several continuations scored after it.
struct KVCache {
  int max_seq = 0;
  int n_past = 0;
  int kv_dim = 0;  // Hkv * hd
  // Uninitialized: attention reads only positions already written, and calibration, which runs one layer at
  // a time, then touches one layer's pages (a 1B model's zero-filled 2048-token cache is 128 MiB).
  UninitVector<float> k;  // (n_layer, max_seq, kv_dim)
  UninitVector<float> v;  // (n_layer, max_seq, kv_dim)
  void truncate(int n) { n_past = n < n_past ? n : n_past; }
};

// One group of LlamaModel::forward_branches: `trunk` rows, then branches of the given lengths.
struct BranchGroup {
  int trunk = 0;
  std::vector<int> branches;
};

// The seven linear layers of a block, in HF order.
enum class LinearKind { Q, K, V, O, Gate, Up, Down };
inline constexpr LinearKind kAllLinears[] = {LinearKind::Q,    LinearKind::K,  LinearKind::V,   LinearKind::O,
                                             LinearKind::Gate, LinearKind::Up, LinearKind::Down};
const char* linear_name(LinearKind k);  // HF suffix: "self_attn.q_proj", ..., "mlp.down_proj"

// Where a linear's input comes from. Q/K/V share one input and Gate/Up another, so calibration statistics
// (GPTQ Hessians, AWQ activation scales) are gathered once per site.
enum class InputSite { AttnIn, OIn, MlpIn, DownIn };
InputSite input_site(LinearKind k);

// Receives each linear input of a block during block_forward (calibration hooks).
class BlockObserver {
 public:
  virtual ~BlockObserver() = default;
  // x: (n, cols) — the activations entering the linears at `site` of block `layer`.
  virtual void observe(int layer, InputSite site, const float* x, int64_t n, int64_t cols) = 0;
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

  // Task scoring's batches: groups of rows, each a trunk and branches after it (an example's context and its
  // choices), in one forward. Every row sees the n_past cached positions; a trunk row also sees the earlier
  // rows of its trunk, and a branch row its group's whole trunk and the earlier rows of its own branch. So a
  // branch gets what it would get run alone after the cache and its trunk (up to float summation order),
  // while the linears see one batch. A branch's positions follow its trunk's, which follow the cache. The
  // groups tile tokens in order. The cache must hold n_past + tokens.size(); the first group's trunk stays in
  // it (n_past advances by its length, as forward() would), every other row is dropped. logits receives
  // (logit_rows.size(), V): the next-token logits of those batch rows.
  void forward_branches(std::span<const int32_t> tokens, std::span<const BranchGroup> groups, KVCache& cache,
                        std::span<const int> logit_rows, float* logits) const;

  // Pieces of forward() for layer-by-layer calibration:
  void embed(std::span<const int32_t> tokens, float* x) const;  // x (n, d)
  // x (n, d) <- block `layer` applied to x at positions [cache.n_past, +n); does NOT advance cache.n_past
  // (the caller does, after the last layer). obs, when given, sees every linear input.
  void block_forward(int layer, float* x, int64_t n, KVCache& cache, BlockObserver* obs = nullptr) const;
  // logits (n, V) from final hidden states x (n, d).
  void head_forward(const float* x, int64_t n, float* logits) const;

  // Replaces the dense f16/bf16 linears and the LM head with resident f32 copies (exact: widening rounds
  // nothing). Batched forwards otherwise widen every weight panel in every call, which for task scoring's
  // many short forwards costs about as much as the arithmetic. Costs 4 bytes per such weight
  // (f32_weights_extra_bytes()). Packed quantized linears are left as they are.
  void keep_f32_weights();
  // What keep_f32_weights() would add, in bytes.
  size_t f32_weights_extra_bytes() const;

  // The weights of one linear; replacing them (quantization) affects every later forward.
  const Linear& linear(int layer, LinearKind k) const;
  void set_linear(int layer, LinearKind k, Linear w);
  // RMSNorm weights (d) preceding a site (AttnIn: input_layernorm, MlpIn: post_attention_layernorm), mutable
  // so AWQ can fold its scales into them.
  std::vector<float>& norm_weight(int layer, InputSite site);
  const std::vector<float>& norm_weight(int layer, InputSite site) const;
  const std::vector<float>& final_norm_weight() const;
  // What the training engine (train/) needs besides the linears: the embedding table (V, d), the LM head
  // (V, d; the embedding table itself when tied) and RoPE's inverse frequencies (hd/2).
  const TensorView& embedding() const;
  const DenseWeight& head_weight() const;
  const std::vector<float>& rope_frequencies() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lowbit

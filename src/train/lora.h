// LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", eq. 3): a frozen linear
// W (out, in) gains a trainable low-rank update, y = W x + (α/r) · B A dropout(x), with A (r, in) and
// B (out, r); B starts at zero so training starts from the base model. PEFT's layout and names: A is
// lora_A.weight, B is lora_B.weight.
//
// IEC, IR-QLoRA's Information Elastic Connection (Qin et al. 2024, sec. 3.3; htqin/IR-QLoRA utils.py
// IRQLoraLinear4bit.forward): two trainable scalars β_A, β_B (start at zero) add parameter-free paths:
//   h = A dropout(x) + β_A · chunkmean_r(x)        chunkmean_r: the mean of each of r consecutive chunks of x
//   u = B h + β_B · repeat(h)                       repeat: h_k copied over the k-th of r chunks of the
//   output y = W x + (α/r) · u
// so `in` and `out` must be divisible by r.
//
// Shapes: n = rows (tokens), in/out = the linear's widths, r = rank.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/llama.h"

namespace lowbit {

struct LoraConfig {
  int rank = 64;
  double alpha = 16;
  double dropout = 0.0;
  bool iec = false;  // IR-QLoRA's elastic connection
  std::vector<LinearKind> targets{std::begin(kAllLinears), std::end(kAllLinears)};
  uint64_t seed = 0;  // A's initialisation and the dropout masks
};

// One adapter with its gradients (f32 master values).
struct LoraAdapter {
  int64_t in = 0, out = 0;
  int r = 0;
  float scale = 0;  // α / r
  double dropout = 0;
  bool iec = false;
  std::vector<float> A, B;    // A (r, in), B (out, r)
  std::vector<float> dA, dB;  // their gradients, same shapes
  float beta_a = 0, beta_b = 0, dbeta_a = 0, dbeta_b = 0;

  // What forward keeps for backward: h (n, r), the input of B.
  struct Saved {
    std::vector<float> h;
  };

  // y (n, out) += (α/r) · u for input x (n, in). key selects the dropout mask (the same key gives the same
  // mask, so a recomputed forward matches the first); train = false turns dropout off (evaluation).
  void forward(const float* x, int64_t n, float* y, Saved& saved, uint64_t key, bool train = true) const;
  // Adds this call's gradients to dA, dB (and dβ) and the input gradient to dx (n, in), given dy (n, out).
  void backward(const float* x, int64_t n, const float* dy, const Saved& saved, uint64_t key, float* dx);
  // ΔW (out, in) = (α/r) · (B + β_B R)(A + β_A M), the exact dense update (R: the repeat matrix, M: the
  // chunk-mean matrix), for merging into the base.
  std::vector<float> delta() const;
  // The same update as one low-rank pair: A' = A + β_A M (r, in), B' = B + β_B R (out, r).
  void folded(std::vector<float>& Ap, std::vector<float>& Bp) const;
  void zero_grad();
};

// The adapters of a model: one per (layer, targeted linear).
class LoraSet {
 public:
  // Fresh adapters for `model`: A as PEFT initialises it (kaiming_uniform with a = √5, i.e. U(−1/√in,
  // 1/√in)), from cfg.seed; B and the β zero.
  LoraSet(const LlamaModel& model, const LoraConfig& cfg);

  const LoraConfig& config() const { return cfg_; }
  int n_layer() const { return n_layer_; }
  // The adapter of a linear, or null when it is not targeted.
  LoraAdapter* find(int layer, LinearKind k);
  const LoraAdapter* find(int layer, LinearKind k) const;
  // Every adapter with its PEFT module path ("model.layers.3.self_attn.q_proj"), in layer then HF order.
  struct Entry {
    std::string module;
    int layer;
    LinearKind kind;
    LoraAdapter* adapter;
  };
  std::vector<Entry> entries();
  void zero_grad();

 private:
  LoraConfig cfg_;
  int n_layer_ = 0;
  std::vector<LoraAdapter> adapters_;  // (n_layer, 7), empty (r == 0) where not targeted
};

// Applying trained adapters to a model for evaluation (ppl, eval, study):
// attach: each adapter becomes its linear's unmerged low-rank delta (kernels/linear.h LowRank, IEC folded in
// exactly); the base stays as it is (a 4-bit base stays packed, as QLoRA evaluates).
void attach_adapters(LlamaModel& model, LoraSet& lora);
// merge: each targeted linear becomes dense f32 Ŵ + ΔW (PEFT's merge_and_unload), e.g. to save a merged
// model.
void merge_adapters(LlamaModel& model, LoraSet& lora);

}  // namespace lowbit

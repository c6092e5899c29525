// Training a LLaMA through LoRA adapters (or, for DB-LLM, its block linears' weights themselves): the forward
// of model/llama.cpp on a packed batch of sequences, keeping what the backward needs, then the backward of
// every op down to the adapters' gradients. The base model is frozen (dense or any packed format: its linears
// are differentiated through their dequantized weights), and gradients of frozen weights are never formed.
// With recompute (gradient checkpointing), only each layer's input is kept through the forward; the backward
// recomputes one layer's activations at a time, so memory holds one layer's activations rather than all of
// them.
//
// Deterministic for a given thread count: no atomics, and every reduction runs in a fixed order.
//
// Shapes: n = rows of the batch, d = n_embd, H/Hkv = heads, hd = head_dim, f = n_ff, V = n_vocab.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/llama.h"
#include "train/grad_ops.h"
#include "train/lora.h"

namespace lowbit {

// Sequences laid end to end (no padding). Each sequence's positions start at 0 and it attends only to itself.
struct TrainBatch {
  std::vector<int32_t> tokens;  // (n)
  std::vector<int32_t> labels;  // (n) the token to predict after tokens[t], or kIgnoreLabel (no loss there)
  std::vector<int> starts;      // (S + 1) sequence s is rows [starts[s], starts[s + 1])
  int64_t n_targets() const;
  // Appends one sequence (its tokens and aligned labels).
  void add(const std::vector<int32_t>& tok, const std::vector<int32_t>& lab);
};

struct TrainerOptions {
  bool recompute = true;     // gradient checkpointing per layer
  int64_t head_chunk = 256;  // LM-head rows per chunk: logits (chunk, V) are the only vocabulary-wide buffer
};

struct LossSum {
  double sum = 0;         // Σ cross-entropy over labelled rows (nats)
  int64_t n_targets = 0;  // labelled rows
  double mean() const { return n_targets ? sum / double(n_targets) : 0.0; }
};

// Distillation instead of cross-entropy against the labels (DB-LLM's DAD, train/grad_ops.h): the teacher's
// final hidden states (n, d) before its final norm, row-aligned with the batch. The teacher shares the
// student's embedding, final norm and LM head (only block linears differ), so its logits are formed here,
// chunk by chunk, from these states: a vocabulary-wide teacher buffer never exists for the whole batch.
struct Distill {
  const float* teacher_hidden = nullptr;  // (n, d)
  double gamma = 1;                       // DAD's entropy exponent (0: plain distillation)
  DadSums sums;                           // out: over the labelled rows
};

// Full-weight training (DB-LLM's latent weights): for each linear where it returns non-null, the backward
// adds that linear's weight gradient dŴ (rows, cols) = Σ_tokens dyᵀ·x to the buffer.
using WeightGradFn = std::function<float*(int layer, LinearKind k)>;

class LlamaTrainer {
 public:
  LlamaTrainer(const LlamaModel& base, LoraSet& lora, TrainerOptions opt = {});

  // Forward and backward: adds the gradient of loss_scale · Σ CE to every adapter's gradients (dA, dB, dβ).
  // key selects the dropout masks of this micro-batch.
  LossSum forward_backward(const TrainBatch& b, float loss_scale, uint64_t key);
  // The same with the loss of `distill` (DAD against a teacher) over the labelled rows; the labels only
  // choose the rows. Returns Σ w·CE in sum; distill.sums gets the parts.
  LossSum forward_backward(const TrainBatch& b, float loss_scale, uint64_t key, Distill& distill);
  // The forward alone, with the adapters applied (dropout off: evaluation).
  LossSum loss(const TrainBatch& b) const;
  // The last layer's output (n, d) for the batch, before the final norm (evaluation mode): a teacher's
  // states for Distill.
  void hidden(const TrainBatch& b, float* out) const;
  void set_weight_grads(WeightGradFn f) { weight_grad_ = std::move(f); }

 private:
  struct Acts;
  void check(const TrainBatch& b) const;
  void layer_forward(int l, float* x, int64_t n, const TrainBatch& b, const std::vector<int>& pos, Acts& a,
                     uint64_t key, bool eval) const;
  void layer_backward(int l, const float* x_in, int64_t n, const TrainBatch& b, const std::vector<int>& pos,
                      Acts& a, uint64_t key, float* dx);
  LossSum head(const float* x, const TrainBatch& b, float loss_scale, float* dx, Distill* distill) const;
  LossSum run(const TrainBatch& b, float loss_scale, uint64_t key, Distill* distill);

  const LlamaModel& base_;
  LoraSet& lora_;
  TrainerOptions opt_;
  // RoPE's backward is the rotation by −θ: the forward with negated frequencies (cos even, sin odd, exactly).
  std::vector<float> neg_freq_;
  WeightGradFn weight_grad_;
};

}  // namespace lowbit

// The optimiser side of fine-tuning, as PyTorch and transformers do it (QLoRA trains with torch AdamW,
// transformers' learning-rate schedules and clip_grad_norm_): AdamW on f32 master weights, the constant and
// cosine schedules with linear warmup, clipping by global L2 norm, and the optimiser state for checkpoints.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace lowbit {

struct ParamRef {
  std::string name;
  float* value;  // f32 master weights
  float* grad;   // their gradients (same size)
  int64_t size;
};

struct AdamWConfig {
  double lr = 2e-4;  // the peak rate the schedule scales; step() applies the rate it is given
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// torch.optim.AdamW (amsgrad off, foreach off: torch/optim/adamw.py _single_tensor_adamw), in float32 with
// torch's order of operations, per element:
//   p *= f32(1 - lr·wd);  m = m·β1 + (1-β1)·g;  v = v·β2 + ((1-β2)·g)·g;
//   denom = sqrt(v) / f32(sqrt(1-β2^t)) + eps;  p += (f32(-lr / (1-β1^t)) · m) / denom
// with the scalars computed in double as Python does and rounded once to f32, t = steps() after the
// increment. torch's CPU add_(alpha) kernel may fuse m·β1 + (1-β1)·g into one FMA; this does not (x86-64-v2
// has none), so results agree with torch to rounding, and are bit-identical run to run and thread count to
// thread count (every element is independent).
class AdamW {
 public:
  explicit AdamW(const AdamWConfig& cfg = {}) : cfg_(cfg) {}

  // One update of every parameter at learning rate lr. The first call fixes the parameter list (names and
  // sizes, moments start at zero as in torch); later calls must pass the same list in the same order.
  void step(std::span<const ParamRef> params, double lr);

  int64_t steps() const { return steps_; }
  const AdamWConfig& config() const { return cfg_; }
  // A parameter's moments (empty before the first step).
  std::span<const float> exp_avg(const std::string& name) const;
  std::span<const float> exp_avg_sq(const std::string& name) const;

  // safetensors (io/safetensors.h, written atomically): F32 tensors "exp_avg.<name>" and "exp_avg_sq.<name>"
  // of shape (size) per parameter, metadata format = "lowbit-adamw", step = steps() in decimal, and the
  // config (beta1, beta2, eps, weight_decay, for the record; load does not compare them).
  void save(const std::string& path) const;
  // Replaces this optimiser's state with the file's. Throws Error with one line naming the file when it is
  // not such a file or its moments do not match `params` (a missing, extra, wrongly sized or non-F32 tensor).
  void load(const std::string& path, std::span<const ParamRef> params);

 private:
  struct Moments {
    std::string name;
    std::vector<float> m, v;
  };
  const Moments& moments(const std::string& name) const;
  AdamWConfig cfg_;
  int64_t steps_ = 0;
  std::vector<Moments> state_;
};

// transformers' get_constant_schedule_with_warmup / get_cosine_schedule_with_warmup lr_lambda
// (optimization.py) as a factor of the peak rate. `step` is the number of optimiser steps already taken
// (LambdaLR's last_epoch when the Trainer calls optimizer.step() before scheduler.step()): the k-th update
// (1-based) uses step k-1, so with warmup the first update has rate 0.
//   constant: step < warmup ? step / max(1, warmup) : 1
//   cosine:   step < warmup ? step / max(1, warmup)
//             : max(0, 0.5·(1 + cos(π · 2·cycles · (step - warmup) / max(1, total - warmup))))
double constant_with_warmup(int64_t step, int64_t warmup_steps);
double cosine_with_warmup(int64_t step, int64_t warmup_steps, int64_t total_steps, double num_cycles = 0.5);
// TrainingArguments.get_warmup_steps for warmup_steps = 0: ceil(total_steps · warmup_ratio) (qlora: 0.03).
int64_t warmup_steps_from_ratio(int64_t total_steps, double warmup_ratio);

// torch.nn.utils.clip_grad_norm_ (norm_type 2): the L2 norm of all gradients together, computed in double
// (torch sums in f32); when max_norm / (norm + 1e-6) < 1 every gradient is scaled by it (rounded to f32).
// Returns the norm before clipping. A non-finite norm is returned and leaves the gradients unchanged (torch
// would scale them by NaN); the caller should skip that step.
double clip_grad_norm(std::span<const ParamRef> params, double max_norm);

}  // namespace lowbit

// KL divergence of a (quantized) model's next-token distribution from a base model's, on the same windows as
// perplexity: per position KL(P_base ‖ P_model) = Σ_v p_base(v) · (log p_base(v) − log p_model(v)).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "kernels/logits.h"

namespace lowbit {

class KldAccumulator {
 public:
  // base and model: (rows, V) logits of the same positions.
  void add(const float* base, const float* model, int64_t rows, int64_t V);
  struct Summary {
    int64_t n = 0;
    double mean = 0, median = 0, p99 = 0, max = 0;
    double top1_agreement = 0;  // fraction of positions where both argmaxes agree
  };
  Summary summary() const;

 private:
  std::vector<double> kl_;
  int64_t agree_ = 0;
};

class LlamaModel;

// A PplOptions::on_window hook that runs each window through `base` too (a fresh cache of seqlen positions)
// and adds the rows that predict tokens 1..L-1 — the positions perplexity scores — to `acc`. base and acc
// must outlive the hook.
std::function<void(int, const float*, std::span<const int32_t>)> kld_window_hook(const LlamaModel& base,
                                                                                 int seqlen,
                                                                                 KldAccumulator& acc);

}  // namespace lowbit

// Perplexity under the study's protocol (the GPTQ/LLaMA3-study evaluation): the token stream of a text, with
// one BOS at its start, is cut into floor(n / L) non-overlapping windows of L tokens from token 0 (the tail
// is dropped); each window is run independently (fresh KV cache); its loss is the mean NLL of tokens 1..L-1
// given their prefix, times L; ppl = exp(Σ window losses / (windows · L)).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "kernels/logits.h"
#include "model/llama.h"

namespace lowbit {

struct PplOptions {
  int seqlen = 2048;
  int max_windows = 0;  // 0 = all
  bool quiet = false;   // no progress bar
  std::string label = "ppl";
  // Called with each window's logits (L, V) and tokens (L), e.g. to compare against a base model (KLD).
  std::function<void(int window, const float* logits, std::span<const int32_t> tokens)> on_window;
};

struct PplResult {
  int64_t n_tokens = 0;  // tokens in the stream (BOS included)
  int windows = 0, seqlen = 0;
  double nll_sum = 0;  // Σ over windows of mean NLL · L
  double ppl = 0;
  double seconds = 0;
  std::vector<double> window_mean_nll;
};

PplResult perplexity(const LlamaModel& model, std::span<const int32_t> ids, const PplOptions& opt);

}  // namespace lowbit

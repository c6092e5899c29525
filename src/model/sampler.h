// Next-token choice: greedy (temperature 0), or temperature + nucleus (top-p; Holtzman et al. 2019) sampling.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace lowbit {

struct SamplerOptions {
  float temperature = 0;  // 0 = greedy
  float top_p = 1;        // keep the smallest set of tokens whose probability sums to >= top_p
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(SamplerOptions opt) : opt_(opt), rng_(opt.seed) {}
  int32_t sample(const float* logits, int64_t n_vocab);

 private:
  SamplerOptions opt_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> buf_;
};

// Index of the largest logit; ties go to the lowest index (as torch.argmax).
int32_t argmax(const float* x, int64_t n);

}  // namespace lowbit

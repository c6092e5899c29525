#include "model/sampler.h"

#include <algorithm>
#include <cmath>

namespace lowbit {

int32_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return int32_t(best);
}

int32_t Sampler::sample(const float* logits, int64_t n) {
  if (opt_.temperature <= 0) return argmax(logits, n);
  const float mx = logits[argmax(logits, n)];
  buf_.resize(size_t(n));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    float p = std::exp((logits[i] - mx) / opt_.temperature);
    buf_[size_t(i)] = {p, int32_t(i)};
    sum += p;
  }
  // Sort descending by probability only as far as needed: the nucleus is usually small.
  std::sort(buf_.begin(), buf_.end(), [](auto& a, auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  size_t keep = buf_.size();
  if (opt_.top_p < 1) {
    double acc = 0;
    for (size_t i = 0; i < buf_.size(); ++i) {
      acc += buf_[i].first / sum;
      if (acc >= opt_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += buf_[i].first;
  double u = std::uniform_real_distribution<double>(0, kept)(rng_);
  for (size_t i = 0; i < keep; ++i) {
    u -= buf_[i].first;
    if (u <= 0) return buf_[i].second;
  }
  return buf_[keep - 1].second;
}

}  // namespace lowbit

#include "eval/kld.h"

#include <algorithm>
#include <cmath>

#include "model/llama.h"

namespace lowbit {

void KldAccumulator::add(const float* base, const float* model, int64_t rows, int64_t V) {
  const size_t off = kl_.size();
  kl_.resize(off + size_t(rows));
  int64_t agree = 0;
#pragma omp parallel for reduction(+ : agree) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const KlRow k = kl_divergence_row(base + r * V, model + r * V, V);
    kl_[off + size_t(r)] = k.kl;
    agree += k.argmax_p == k.argmax_q;
  }
  agree_ += agree;
}

KldAccumulator::Summary KldAccumulator::summary() const {
  Summary s;
  s.n = int64_t(kl_.size());
  if (s.n == 0) return s;
  std::vector<double> v = kl_;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / double(s.n);
  s.median = s.n % 2 ? v[size_t(s.n / 2)] : 0.5 * (v[size_t(s.n / 2 - 1)] + v[size_t(s.n / 2)]);
  // nearest-rank 99th percentile
  s.p99 = v[size_t(std::min<int64_t>(s.n - 1, int64_t(std::ceil(0.99 * double(s.n))) - 1))];
  s.max = v.back();
  s.top1_agreement = double(agree_) / double(s.n);
  return s;
}

std::function<void(int, const float*, std::span<const int32_t>)> kld_window_hook(const LlamaModel& base,
                                                                                 int seqlen,
                                                                                 KldAccumulator& acc) {
  struct State {
    std::vector<float> logits;  // (seqlen, n_vocab)
    KVCache cache;
  };
  const int64_t V = base.config().n_vocab;
  auto st = std::make_shared<State>();
  st->logits.resize(size_t(seqlen) * size_t(V));
  st->cache = base.new_cache(seqlen);
  return [&base, &acc, st, V](int, const float* logits, std::span<const int32_t> win) {
    st->cache.truncate(0);
    base.forward(win, st->cache, st->logits.data());
    acc.add(st->logits.data(), logits, int64_t(win.size()) - 1, V);
  };
}

}  // namespace lowbit

#include "eval/perplexity.h"

#include <cmath>

#include "core/error.h"
#include "core/progress.h"
#include "eval/harness.h"

namespace lowbit {

PplResult perplexity(const LlamaModel& model, std::span<const int32_t> ids, const PplOptions& opt) {
  const int L = opt.seqlen;
  if (L < 2) fail("--seqlen must be at least 2 (got {})", L);
  PplResult r;
  r.n_tokens = int64_t(ids.size());
  r.seqlen = L;
  r.windows = int(r.n_tokens / L);
  if (opt.max_windows > 0) r.windows = std::min(r.windows, opt.max_windows);
  if (r.windows == 0) fail("text has {} tokens, fewer than one window of --seqlen {}", r.n_tokens, L);
  const int64_t V = model.config().n_vocab;

  KVCache cache = model.new_cache(L);
  std::vector<float> logits(size_t(L) * V);  // (L, V)
  Progress bar(opt.label, uint64_t(r.windows), "tok", opt.quiet);
  Timer timer;
  for (int w = 0; w < r.windows; ++w) {
    std::span<const int32_t> win = ids.subspan(size_t(w) * L, size_t(L));
    cache.truncate(0);
    model.forward(win, cache, logits.data());
    double nll = 0;
#pragma omp parallel for reduction(+ : nll) schedule(static)
    for (int i = 0; i < L - 1; ++i)
      nll -= log_softmax_at(logits.data() + size_t(i) * V, int(V), win[size_t(i) + 1], nullptr);
    const double mean = nll / (L - 1);
    r.window_mean_nll.push_back(mean);
    r.nll_sum += mean * L;
    if (opt.on_window) opt.on_window(w, logits.data(), win);
    bar.add(1, uint64_t(L));
  }
  bar.finish();
  r.seconds = timer.seconds();
  r.ppl = std::exp(r.nll_sum / (double(r.windows) * L));
  return r;
}

}  // namespace lowbit

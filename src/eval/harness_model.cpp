// The harness over a LlamaModel: one KVCache per worker session.
#include <fmt/format.h>

#include <algorithm>

#include "core/sys.h"
#include "eval/harness.h"
#include "model/llama.h"

namespace lowbit {

namespace {

class ModelSession : public ScoringSession {
 public:
  ModelSession(const LlamaModel& m, int max_seq) : model_(m), cache_(m.new_cache(max_seq)) {}
  int n_past() const override { return cache_.n_past; }
  void truncate(int n) override { cache_.truncate(n); }
  void forward(std::span<const int32_t> tokens, int first_logit_row, float* logits) override {
    model_.forward(tokens, cache_, logits, first_logit_row);
  }
  void forward_branches(std::span<const int32_t> tokens, std::span<const BranchGroup> groups,
                        std::span<const int> logit_rows, float* logits) override {
    model_.forward_branches(tokens, groups, cache_, logit_rows, logits);
  }
  int max_tokens() const override { return cache_.max_seq; }

 private:
  const LlamaModel& model_;
  KVCache cache_;
};

class ModelLogitSource : public LogitSource {
 public:
  ModelLogitSource(const LlamaModel& m, int max_length) : model_(m), max_length_(max_length) {}
  int n_vocab() const override { return model_.config().n_vocab; }
  int max_length() const override { return max_length_; }
  std::unique_ptr<ScoringSession> new_session() const override {
    return std::make_unique<ModelSession>(model_, max_length_);
  }

 private:
  const LlamaModel& model_;
  int max_length_;
};

}  // namespace

Json run_eval(const LlamaModel& model, const Tokenizer& tok, const EvalOptions& opts) {
  // The model's context caps the window (lm-eval v0.3 takes max_length from the model config as well).
  int ctx = model.config().max_position_embeddings;
  auto src = model_logit_source(model, ctx > 0 ? std::min(opts.max_length, ctx) : opts.max_length);
  return run_eval(*src, tok, opts);
}

void widen_weights_for_scoring(LlamaModel& model, bool quiet) {
  const size_t need = model.f32_weights_extra_bytes();
  if (need == 0) return;
  const uint64_t avail = available_memory_bytes();
  const double mib = double(need) / (1 << 20);
  if (avail != 0 && need <= avail / 2) {
    model.keep_f32_weights();
    if (!quiet)
      fmt::print(stderr, "eval: keeping f32 copies of the dense weights for scoring (+{:.0f} MiB)\n", mib);
  } else if (!quiet) {
    fmt::print(
        stderr,
        "eval: dense weights stay in their stored dtype (f32 copies would need {:.0f} MiB of {:.0f} MiB "
        "available); scoring widens them per forward, more slowly\n",
        mib, double(avail) / (1 << 20));
  }
}

std::unique_ptr<LogitSource> model_logit_source(const LlamaModel& model, int max_length) {
  return std::make_unique<ModelLogitSource>(model, max_length);
}

}  // namespace lowbit

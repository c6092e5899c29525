// The harness over a LlamaModel: one KVCache per worker session.
#include <algorithm>

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

std::unique_ptr<LogitSource> model_logit_source(const LlamaModel& model, int max_length) {
  return std::make_unique<ModelLogitSource>(model, max_length);
}

}  // namespace lowbit

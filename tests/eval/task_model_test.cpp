// The harness on the real test bed: prefix-shared scoring against each full string scored on its own.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/harness.h"
#include "eval/task_registry.h"
#include "io/checkpoint.h"
#include "io/tokenizer.h"
#include "model/llama.h"
#include "test_util.h"

namespace lowbit {
namespace {

TEST(EvalModel, SharedPrefixEqualsIndependentScoringOnTestbed) {
  std::string mp = test::model_path("testbed-25m");
  LlamaModel model(load_checkpoint(mp));
  auto tok = load_tokenizer_for_model(mp);
  const int V = model.config().n_vocab;
  std::vector<Example> examples;
  for (const std::string& name : known_tasks()) {
    auto t = load_task(name, test::paths().data_dir, 2, -1);
    size_t take = name == "mmlu" ? 1 : 2;  // (cross-question reuse is covered by the fake-model test)
    examples.insert(examples.end(), t.examples.begin(), t.examples.begin() + std::ptrdiff_t(take));
  }
  auto src = model_logit_source(model, 2048);
  PrefixScorer scorer(src->new_session(), V);
  int64_t total = 0;
  // Examples alone (score), then again three to a forward (score_batch: one group each); entry e and
  // e + n are the same example.
  const size_t n = examples.size();
  std::vector<std::vector<TokenizedChoice>> all_toks;
  std::vector<std::vector<ChoiceScore>> all_got;
  for (const Example& ex : examples) {
    all_toks.push_back(tokenize_example(*tok, ex, 2048));
    all_got.push_back(scorer.score(all_toks.back()));
  }
  PrefixScorer batched(src->new_session(), V);
  for (size_t i = 0; i < n; i += 3) {
    std::vector<std::vector<TokenizedChoice>> three(all_toks.begin() + long(i),
                                                    all_toks.begin() + long(std::min(n, i + 3)));
    auto got = batched.score_batch(three);
    all_got.insert(all_got.end(), got.begin(), got.end());
  }
  ASSERT_EQ(all_got.size(), 2 * n);
  for (size_t e = 0; e < 2 * n; ++e) {
    const Example& ex = examples[e % n];
    const auto& toks = all_toks[e % n];
    const auto& got = all_got[e];
    for (size_t i = 0; i < toks.size(); ++i) {
      const auto& c = toks[i];
      ASSERT_GT(c.n_score, 0);
      // From scratch: the whole sequence in one forward with a fresh cache, log-softmax in double.
      KVCache cache = model.new_cache(2048);
      size_t ctx_len = c.tokens.size() - size_t(c.n_score);
      std::vector<float> logits((size_t(c.n_score) + 1) * size_t(V));  // rows of positions ctx_len-1 .. end
      model.forward(c.tokens, cache, logits.data(), int(ctx_len - 1));
      double want = 0;
      bool greedy = true;
      for (size_t p = ctx_len; p < c.tokens.size(); ++p) {
        const float* row = logits.data() + (p - ctx_len) * size_t(V);
        double m = row[0];
        size_t am = 0;
        for (int v = 0; v < V; ++v)
          if (row[v] > m) m = row[v], am = size_t(v);
        double s = 0;
        for (int v = 0; v < V; ++v) s += std::exp(double(row[v]) - m);
        want += double(row[c.tokens[p]]) - m - std::log(s);
        greedy = greedy && am == size_t(c.tokens[p]);
      }
      // Float32 model arithmetic in different chunkings: 1e-4 on a sum of a few dozen log-probabilities.
      EXPECT_NEAR(got[i].logprob, want, 1e-4) << ex.contexts[i].substr(0, 60) << "|" << ex.continuations[i];
      EXPECT_EQ(got[i].greedy, greedy);
      EXPECT_LT(want, 0.0);
      if (e < n) total += int64_t(c.tokens.size()) - 1;
    }
  }
  EXPECT_LT(scorer.tokens_forwarded(), total);
  EXPECT_LT(batched.tokens_forwarded(), total);
}

}  // namespace
}  // namespace lowbit

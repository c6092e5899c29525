#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>

#include "../test_util.h"
#include "core/error.h"
#include "core/mmap.h"
#include "core/sha256.h"
#include "eval/harness.h"
#include "eval/task_registry.h"
#include "eval/task_text.h"
#include "eval_fakes.h"
#include "test_util.h"

namespace lowbit {
namespace {

using test::FakeSource;
using test::FakeTokenizer;

Example make_example(std::vector<std::string> ctx, std::vector<std::string> cont, int gold = 0) {
  Example e;
  e.contexts = std::move(ctx);
  e.continuations = std::move(cont);
  for (const std::string& c : e.continuations) e.choice_texts.push_back(c.substr(1));
  e.gold = gold;
  return e;
}

TEST(EvalScoring, TokenSplitEncodesTheConcatenation) {
  // "a" + "b" merge into the piece "ab": the scored tokens are those of tokens(ctx + cont) past
  // len(tokens(ctx)).
  FakeTokenizer tok({"ab"});
  auto t = tokenize_example(tok, make_example({"xa"}, {"bc"}), 2048);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].tokens, (std::vector<int32_t>{1, 3 + 'x', 259, 3 + 'c'}));  // [BOS] x ab c
  EXPECT_EQ(t[0].n_score, 1);  // ctx is [BOS] x a: only "c" is scored, conditioned on [BOS] x ab
  EXPECT_FALSE(t[0].truncated);
  // A continuation swallowed entirely by the merge scores nothing.
  auto z = tokenize_example(tok, make_example({"xa"}, {"b"}), 2048);
  EXPECT_EQ(z[0].n_score, 0);
}

TEST(EvalScoring, TruncationKeepsTheLastTokensBosIncluded) {
  FakeTokenizer tok;
  auto t = tokenize_example(tok, make_example({"0123456789"}, {" ab"}), 8);
  ASSERT_EQ(t[0].tokens.size(), 8u);  // [BOS] + 13 bytes -> last 8
  EXPECT_TRUE(t[0].truncated);
  EXPECT_EQ(tok.decode(t[0].tokens), "56789 ab");
  EXPECT_EQ(t[0].n_score, 3);
  EXPECT_THROW(tokenize_example(tok, make_example({"x"}, {" abcdefgh"}), 8), Error);  // 9 scored > 7
  FakeTokenizer no_bos;
  no_bos.add_bos = false;
  EXPECT_THROW(tokenize_example(no_bos, make_example({""}, {" a"}), 8), Error);  // nothing before the target
}

TEST(EvalScoring, LogSoftmaxAgainstDoubleReference) {
  test::for_each_simd_target([&] {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 4.0f);
    for (int V : {1, 7, 32000, 128256}) {
      std::vector<float> row(static_cast<size_t>(V));
      for (float& x : row) x = nd(rng);
      for (int32_t target : {0, V / 2, V - 1}) {
        double m = *std::max_element(row.begin(), row.end()), s = 0;
        for (float x : row) s += std::exp(double(x) - m);
        double want = double(row[size_t(target)]) - m - std::log(s);
        bool greedy = false;
        // hn::Exp is within a few ulp and float lane sums cover 64 vectors: 1e-6 absolute is ample.
        EXPECT_NEAR(log_softmax_at(row.data(), V, target, &greedy), want, 1e-6) << V << " " << target;
        EXPECT_EQ(greedy, row[size_t(target)] == m);
      }
    }
    std::vector<float> tie = {1.0f, 3.0f, 3.0f, -2.0f};
    bool g1 = false, g2 = true;
    log_softmax_at(tie.data(), 4, 1, &g1);
    log_softmax_at(tie.data(), 4, 2, &g2);
    EXPECT_TRUE(g1);  // torch.argmax picks the first maximum
    EXPECT_FALSE(g2);
  });
}

// Examples from every task (real files), scored by one PrefixScorer in sequence (reusing cache prefixes
// within and across examples), against each choice scored from scratch in double precision.
TEST(EvalScoring, SharedPrefixEqualsIndependentScoring) {
  FakeTokenizer tok({" the", "Answer:", "ing", " A", " B"});
  const int V = tok.vocab_size();
  std::string data = test::paths().data_dir;
  std::vector<Example> all;
  for (const std::string& name : known_tasks()) {
    auto t = load_task(name, data, name == "mmlu" ? 2 : 6, -1);
    all.insert(all.end(), t.examples.begin(), t.examples.begin() + std::min<size_t>(t.examples.size(), 12));
  }
  int64_t forwarded = 0, total = 0;
  PrefixScorer scorer(std::make_unique<test::FakeSession>(V, 2048, &forwarded), V);
  size_t checked = 0;
  for (const Example& ex : all) {
    auto toks = tokenize_example(tok, ex, 2048);
    auto got = scorer.score(toks);
    ASSERT_EQ(got.size(), toks.size());
    for (size_t i = 0; i < toks.size(); ++i) {
      bool greedy = false;
      double want = test::reference_logprob(toks[i].tokens, toks[i].n_score, V, &greedy);
      EXPECT_NEAR(got[i].logprob, want, 1e-6 * toks[i].n_score + 1e-12)
          << ex.contexts[i] << ex.continuations[i];
      EXPECT_EQ(got[i].greedy, greedy);
      EXPECT_EQ(got[i].n_tokens, toks[i].n_score);
      total += int64_t(toks[i].tokens.size()) - 1;
      ++checked;
    }
  }
  EXPECT_GE(checked, 150u);
  EXPECT_EQ(forwarded, scorer.tokens_forwarded());
  EXPECT_LT(double(forwarded), 0.6 * double(total));  // the prefixes really were shared

  // The same examples several to a forward (score_batch), in batches of 1 to 4 examples.
  PrefixScorer batched(std::make_unique<test::FakeSession>(V, 2048, nullptr), V);
  size_t multi = 0;
  for (size_t i = 0, n = 1; i < all.size(); i += n, n = n % 4 + 1) {
    std::vector<std::vector<TokenizedChoice>> toks;
    for (size_t k = i; k < std::min(all.size(), i + n); ++k)
      toks.push_back(tokenize_example(tok, all[k], 2048));
    multi += toks.size() > 1;
    auto got = batched.score_batch(toks);
    ASSERT_EQ(got.size(), toks.size());
    for (size_t e = 0; e < toks.size(); ++e)
      for (size_t c = 0; c < toks[e].size(); ++c) {
        bool greedy = false;
        double want = test::reference_logprob(toks[e][c].tokens, toks[e][c].n_score, V, &greedy);
        EXPECT_NEAR(got[e][c].logprob, want, 1e-6 * toks[e][c].n_score + 1e-12) << all[i + e].contexts[c];
        EXPECT_EQ(got[e][c].greedy, greedy);
        EXPECT_EQ(got[e][c].n_tokens, toks[e][c].n_score);
      }
  }
  EXPECT_GE(multi, 10u);
}

TEST(EvalMetrics, AccAndAccNormDiffer) {
  // acc takes the highest sum; acc_norm divides by the choice's length in code points ("ééé" is 3, not 6
  // bytes).
  Example e = make_example({"q", "q"}, {" \xc3\xa9\xc3\xa9\xc3\xa9", " abcd"}, 1);
  std::vector<ChoiceScore> s(2);
  s[0].logprob = -3.3;  // -1.1 per character
  s[1].logprob = -4.0;  // -1.0 per character
  ExampleResult r = multiple_choice_result(e, s);
  EXPECT_EQ(r.pred, 0u);
  EXPECT_EQ(r.pred_norm, 1u);
  EXPECT_EQ(r.acc, 0.0);
  EXPECT_EQ(r.acc_norm, 1.0);
  s[0].logprob = -4.0;  // tie: numpy.argmax takes the first
  EXPECT_EQ(multiple_choice_result(e, s).pred, 0u);
}

TEST(EvalMetrics, StderrIsLmEvalMeanStderr) {
  std::vector<double> v = {1, 0, 1, 1};
  EXPECT_NEAR(mean_stderr(v), std::sqrt(0.75 * 0.25 / 3),
              1e-15);  // sample std / sqrt(n) = sqrt(p(1-p)/(n-1))
  std::vector<double> one = {1};
  EXPECT_TRUE(std::isnan(mean_stderr(one)));
  std::vector<double> nan = {1, NAN, 3};
  EXPECT_EQ(np_argmax(nan), 1u);
}

TEST(EvalRun, FakeModelAllTasks) {
  FakeTokenizer tok({" the", "Answer:"});
  FakeSource src(tok.vocab_size(), 2048);
  EvalOptions o;
  o.tasks = known_tasks();
  o.data_dir = test::paths().data_dir;
  o.limit = 3;
  o.quiet = true;
  o.threads = 2;
  o.model_name = "fake";
  o.log_path = test::temp_dir("eval-run") + "/log.jsonl";
  Json j = run_eval(src, tok, o);
  const Json& r = j["results"];
  for (const char* t : {"piqa", "arc_easy", "arc_challenge", "hellaswag"}) {
    ASSERT_TRUE(r.contains(t)) << t;
    for (const char* m : {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"})
      EXPECT_TRUE(r[t].contains(m)) << t << m;
    EXPECT_EQ(r[t]["n"], 3);
  }
  EXPECT_FALSE(r["winogrande"].contains("acc_norm"));
  EXPECT_TRUE(r["lambada"].contains("ppl"));
  EXPECT_EQ(r["mmlu"]["n"], 171);
  EXPECT_EQ(r["mmlu"]["n_subjects"], 57);
  for (const char* c : {"mmlu_stem", "mmlu_humanities", "mmlu_social_sciences", "mmlu_other"})
    EXPECT_TRUE(r.contains(c)) << c;
  EXPECT_EQ(r["mmlu_stem"]["n_subjects"], 18);
  EXPECT_EQ(r["mmlu_abstract_algebra"]["n"], 3);
  EXPECT_EQ(j["config"]["num_fewshot"]["mmlu"], 5);
  EXPECT_EQ(j["config"]["limit"], 3);
  EXPECT_EQ(j["data_files"]["piqa"]["piqa/valid.jsonl"], sha256_file(test::data_path("piqa/valid.jsonl")));
  // acc_stderr is lm-eval's mean_stderr of the per-example accuracies.
  double p = r["piqa"]["acc"];
  if (r["piqa"]["acc_stderr"].is_number())
    EXPECT_NEAR(double(r["piqa"]["acc_stderr"]), std::sqrt(p * (1 - p) / 2), 1e-12);

  // The log has a row per example, and the summary is the mean of the rows.
  std::string log = read_file(o.log_path);
  size_t rows = 0, piqa_hits = 0;
  double lambada_lp = 0;
  size_t pos = 0;
  while (pos < log.size()) {
    size_t end = log.find('\n', pos);
    Json row = Json::parse(log.substr(pos, end - pos));
    pos = end + 1;
    ++rows;
    if (row["task"] == "piqa") piqa_hits += row["acc"].get<double>() > 0.5;
    if (row["task"] == "lambada") lambada_lp += row["logprobs"][0].get<double>();
  }
  EXPECT_EQ(rows, 6u * 3 + 57 * 3);
  EXPECT_NEAR(double(r["piqa"]["acc"]), piqa_hits / 3.0, 1e-12);
  EXPECT_NEAR(double(r["lambada"]["ppl"]), std::exp(-lambada_lp / 3), 1e-9);

  // One worker gives the same numbers as two.
  o.threads = 1;
  o.log_path.clear();
  Json j1 = run_eval(src, tok, o);
  EXPECT_EQ(j1["results"].dump(), r.dump());
}

TEST(EvalRun, MmluTruncationIsCounted) {
  // With bytes as tokens and a 1024-token window, the prompts with more than 1023 bytes (+ BOS) are
  // truncated.
  FakeTokenizer tok;
  auto t = load_task("mmlu", test::paths().data_dir, 0, -1);
  ASSERT_EQ(t.examples.size(), 14042u);
  int64_t expect = 0;
  for (const Example& e : t.examples) expect += 1 + e.contexts[0].size() + 2 > 1024;
  EXPECT_GT(expect, 100);
  std::vector<Example> few;
  int64_t expect_few = 0;
  for (size_t i = 0; i < t.examples.size(); i += 40) {
    few.push_back(t.examples[i]);
    expect_few += 1 + t.examples[i].contexts[0].size() + 2 > 1024;
  }
  FakeSource src(tok.vocab_size(), 1024);
  ScoreOptions so;
  so.max_length = 1024;
  so.threads = 2;
  so.quiet = true;
  ScoreStats st;
  auto scores = score_examples(few, tok, src, so, &st);
  EXPECT_EQ(st.truncated_examples, expect_few);
  EXPECT_GT(expect_few, 0);
  EXPECT_EQ(st.requests, int64_t(few.size()) * 4);
  for (const auto& s : scores)
    for (const ChoiceScore& c : s) EXPECT_EQ(c.n_tokens, 2);  // " A" is two byte tokens
  int64_t all_truncated = 0;
  for (const Example& e : t.examples) {
    auto toks = tokenize_example(tok, e, 1024);
    all_truncated += toks[0].truncated;
    ASSERT_LE(toks[0].tokens.size(), 1024u);
  }
  EXPECT_EQ(all_truncated, expect);
}

// Writes the first 5 requests of every task (5 per MMLU subject) as JSONL for tools/ref_tasks.py --compare:
// to $LOWBIT_EVAL_DUMP when set (tools/check_ref_tasks.sh does this), else to a temp file.
// LOWBIT_EVAL_DUMP_LIMIT changes the 5 (0 = all examples).
TEST(EvalRequests, DumpForPythonReference) {
  const char* env = std::getenv("LOWBIT_EVAL_DUMP");
  std::string path = env && *env ? env : test::temp_dir("eval-dump") + "/requests.jsonl";
  const char* lim = std::getenv("LOWBIT_EVAL_DUMP_LIMIT");  // 0 = everything
  int limit = lim && *lim ? std::atoi(lim) : 5;
  std::string out;
  size_t n = 0;
  for (const std::string& name : known_tasks()) {
    auto t = load_task(name, test::paths().data_dir, limit, -1);
    for (size_t i = 0; i < t.examples.size(); ++i) {
      const Example& e = t.examples[i];
      Json row = {{"task", name},
                  {"doc_id", i},
                  {"contexts", e.contexts},
                  {"continuations", e.continuations},
                  {"choice_texts", e.choice_texts},
                  {"gold", e.gold}};
      out += row.dump() + "\n";
      ++n;
    }
  }
  if (limit == 5) EXPECT_EQ(n, 6u * 5 + 57 * 5);
  write_file_atomic(path, out);
}

}  // namespace
}  // namespace lowbit

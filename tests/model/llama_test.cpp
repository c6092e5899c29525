// The FP forward against PyTorch references (../shared/refs/testbed-25m.json) and against itself (KV cache).
#include "model/llama.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "core/parallel.h"
#include "core/sys.h"
#include "eval/perplexity.h"
#include "io/tokenizer.h"
#include "model/sampler.h"
#include "test_util.h"

namespace lowbit {
namespace {

const LlamaModel& testbed() {
  static LlamaModel m(load_checkpoint(test::model_path("testbed-25m")));
  return m;
}

std::vector<int32_t> json_ids(const Json& a) {
  return a.get<std::vector<int32_t>>();
}

// Golden block: float32 PyTorch vs our float32 forward differ only in summation order; over 8 layers the
// logits agree to ~1e-5 relative, far inside the 1e-3 log-prob tolerance the issue sets.
TEST(LlamaTestbed, GoldenLogprobsArgmaxAndLogits) {
  const Json& gold = test::testbed_refs()["golden"];
  const auto ids = json_ids(gold["input_ids"]);
  const auto& m = testbed();
  const int64_t V = m.config().n_vocab, n = int64_t(ids.size());
  KVCache cache = m.new_cache(int(n));
  std::vector<float> logits(size_t(n * V));
  m.forward(ids, cache, logits.data());
  const auto lp = gold["next_logprob"].get<std::vector<double>>();
  ASSERT_EQ(lp.size(), size_t(n - 1));
  for (int64_t i = 0; i + 1 < n; ++i)
    EXPECT_NEAR(log_softmax_at_scalar(logits.data() + i * V, V, ids[size_t(i) + 1]), lp[size_t(i)], 1e-3)
        << "pos " << i;
  const auto am = json_ids(gold["argmax"]);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(argmax(logits.data() + i * V, V), am[size_t(i)]) << "pos " << i;
  const auto last = gold["last_logits_first_256"].get<std::vector<double>>();
  for (size_t j = 0; j < last.size(); ++j) EXPECT_NEAR(logits[size_t((n - 1) * V) + j], last[j], 1e-3) << j;
}

TEST(LlamaTestbed, GreedyContinuationMatchesReference) {
  const Json& gold = test::testbed_refs()["golden"];
  const auto want = json_ids(gold["greedy_ids"]);
  const auto& m = testbed();
  auto tok = load_tokenizer_for_model(test::model_path("testbed-25m"));
  std::vector<int32_t> ids = tok->encode_with_bos(gold["greedy_prompt"].get<std::string>());
  ASSERT_EQ(std::vector<int32_t>(want.begin(), want.begin() + long(ids.size())), ids);
  KVCache cache = m.new_cache(int(want.size()));
  std::vector<float> logits(size_t(m.config().n_vocab));
  m.forward(ids, cache, logits.data(), int(ids.size()) - 1);
  while (ids.size() < want.size()) {
    ids.push_back(argmax(logits.data(), m.config().n_vocab));
    int32_t one[1] = {ids.back()};
    if (ids.size() < want.size()) m.forward(one, cache, logits.data());
  }
  EXPECT_EQ(ids, want);
  EXPECT_EQ(tok->decode(std::span(ids).subspan(1)), gold["greedy_text"].get<std::string>());
}

// Prefill in one call (sgemm path), in chunks, and token by token (GEMV + decode attention) must agree: they
// are the same function of the inputs up to float summation order (tolerance ~1e-4 on O(10) logits).
TEST(LlamaTestbed, KvCacheChunkingAgrees) {
  const auto ids = json_ids(test::testbed_refs()["golden"]["input_ids"]);
  const auto& m = testbed();
  const int64_t V = m.config().n_vocab, n = int64_t(ids.size());
  std::vector<float> full(size_t(n * V)), part(size_t(n * V));
  KVCache c1 = m.new_cache(int(n));
  m.forward(ids, c1, full.data());
  KVCache c2 = m.new_cache(int(n));
  std::span<const int32_t> s(ids);
  m.forward(s.subspan(0, 40), c2, part.data());
  for (int64_t i = 40; i < n; ++i) m.forward(s.subspan(size_t(i), 1), c2, part.data() + i * V);
  float max_diff = 0;
  for (size_t i = 0; i < full.size(); ++i) max_diff = std::max(max_diff, std::fabs(full[i] - part[i]));
  EXPECT_LT(max_diff, 2e-3f);
  // Truncating the cache and re-running gives the same logits as the first run.
  c2.truncate(40);
  std::vector<float> again(size_t((n - 40) * V));
  m.forward(s.subspan(40), c2, again.data());
  for (size_t i = 0; i < again.size(); ++i) ASSERT_NEAR(again[i], full[size_t(40 * V) + i], 2e-3f);
}

// With several threads, a contended CPU makes some regions run on one thread (core/parallel.h): the logits of
// a prefill (tiled GEMMs, attention) and of decode steps (GEMV, RMSNorm, RoPE) must not change by a bit.
TEST(LlamaTestbed, ContendedRunsGiveIdenticalLogits) {
  const auto ids = json_ids(test::testbed_refs()["golden"]["input_ids"]);
  const auto& m = testbed();
  const int64_t V = m.config().n_vocab, n = int64_t(ids.size());
  const int saved = num_threads();
  set_num_threads(2);
  std::vector<float> logits[2];
  for (int contended : {0, 1}) {
    set_contended_for_testing(contended);
    logits[contended].resize(size_t((n + 4) * V));
    KVCache c = m.new_cache(int(n) + 4);
    m.forward(ids, c, logits[contended].data());
    for (int i = 0; i < 4; ++i) {
      const int32_t next[1] = {ids[size_t(i)]};
      m.forward(next, c, logits[contended].data() + (n + i) * V);
    }
  }
  set_contended_for_testing(false);
  set_num_threads(saved);
  EXPECT_TRUE(logits[0] == logits[1]);
}

// Groups of a trunk and branches after a cached prefix in one batch (task scoring) against each trunk plus
// branch run alone after the prefix: the same function of the inputs up to summation order, so the chunking
// test's tolerance applies.
TEST(LlamaTestbed, BranchBatchEqualsEachBranchAlone) {
  const auto ids = json_ids(test::testbed_refs()["golden"]["input_ids"]);
  const auto& m = testbed();
  const int64_t V = m.config().n_vocab;
  ASSERT_GE(ids.size(), 60u);
  const int P = 12;  // cached prefix ids[0, 12)
  auto seq = [&](size_t a, size_t b) {
    return std::vector<int32_t>(ids.begin() + long(a), ids.begin() + long(b));
  };
  // Group 0: trunk ids[12, 20); branch 0 continues the text, branch 1 repeats it and goes on with later
  // text, branch 2 is one token. Group 1: another trunk (ids[40, 46)) and two branches. Group 2: no trunk.
  struct Case {
    std::vector<int32_t> trunk;
    std::vector<std::vector<int32_t>> branches;
  };
  std::vector<Case> cases = {{seq(12, 20), {seq(20, 40), seq(20, 40), {ids[5]}}},
                             {seq(40, 46), {seq(46, 52), seq(52, 60)}},
                             {{}, {seq(30, 36)}}};
  cases[0].branches[1].insert(cases[0].branches[1].end(), ids.begin() + 50, ids.begin() + 60);
  std::vector<int32_t> batch;
  std::vector<BranchGroup> groups;
  for (const Case& k : cases) {
    BranchGroup g;
    g.trunk = int(k.trunk.size());
    batch.insert(batch.end(), k.trunk.begin(), k.trunk.end());
    for (const auto& b : k.branches) {
      batch.insert(batch.end(), b.begin(), b.end());
      g.branches.push_back(int(b.size()));
    }
    groups.push_back(g);
  }
  std::vector<int> rows;
  for (int r = 1; r < int(batch.size()); r += (r % 3 == 0 ? 1 : 2))
    rows.push_back(r);  // trunk and branch rows
  KVCache c = m.new_cache(int(P + batch.size()));
  m.forward(std::span(ids).subspan(0, P), c, nullptr, P);
  std::vector<float> got(rows.size() * size_t(V));
  m.forward_branches(batch, groups, c, rows, got.data());
  EXPECT_EQ(c.n_past, P + groups[0].trunk);  // the first trunk stays in the cache, nothing else
  // Each row's logits from a lone forward of [trunk, branch] after the prefix.
  float max_diff = 0;
  size_t checked = 0;
  int row = 0;
  for (const Case& k : cases) {
    const int trunk_row = row;
    row += int(k.trunk.size());
    for (size_t b = 0; b < k.branches.size(); ++b) {
      std::vector<int32_t> alone_ids = k.trunk;
      alone_ids.insert(alone_ids.end(), k.branches[b].begin(), k.branches[b].end());
      c.truncate(P);
      std::vector<float> alone(alone_ids.size() * size_t(V));
      m.forward(alone_ids, c, alone.data());
      for (size_t i = 0; i < rows.size(); ++i) {
        int at = -1;  // the row in the lone forward
        if (b == 0 && rows[i] >= trunk_row && rows[i] < trunk_row + int(k.trunk.size()))
          at = rows[i] - trunk_row;
        if (rows[i] >= row && rows[i] < row + int(k.branches[b].size()))
          at = int(k.trunk.size()) + rows[i] - row;
        if (at < 0) continue;
        for (int64_t v = 0; v < V; ++v)
          max_diff = std::max(max_diff, std::fabs(alone[size_t(at) * size_t(V) + size_t(v)] -
                                                  got[i * size_t(V) + size_t(v)]));
        ++checked;
      }
      row += int(k.branches[b].size());
    }
  }
  EXPECT_EQ(checked, rows.size());
  EXPECT_LT(max_diff, 2e-3f);
  // (Without the masks, rows would see other branches' or groups' tokens and differ by O(1).)
  std::vector<BranchGroup> bad = {groups[0]};
  EXPECT_THROW(m.forward_branches(batch, bad, c, rows, got.data()), Error);  // does not tile the batch
}

TEST(LlamaTestbed, RejectsBadTokensAndOverflow) {
  const auto& m = testbed();
  KVCache c = m.new_cache(4);
  std::vector<int32_t> bad = {1, 32000};
  EXPECT_THROW(m.forward(bad, c, nullptr, 2), Error);
  std::vector<int32_t> many(5, 1);
  EXPECT_THROW(m.forward(many, c, nullptr, 5), Error);
}

}  // namespace
}  // namespace lowbit

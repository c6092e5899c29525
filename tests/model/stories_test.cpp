// stories260K from the llama2.c file and from the GGUF v1 file: same weights, so the same logits, and the
// greedy story llama2.c documents.
#include <gtest/gtest.h>

#include <cmath>

#include "io/tokenizer.h"
#include "model/llama.h"
#include "model/sampler.h"
#include "test_util.h"

namespace lowbit {
namespace {

std::string stories(const std::string& f) {
  return test::model_path("stories260K/" + f);
}

std::vector<int32_t> greedy(const LlamaModel& m, std::vector<int32_t> ids, int n) {
  KVCache c = m.new_cache(int(ids.size()) + n);
  std::vector<float> logits(size_t(m.config().n_vocab));
  m.forward(ids, c, logits.data(), int(ids.size()) - 1);
  for (int i = 0; i < n; ++i) {
    ids.push_back(argmax(logits.data(), m.config().n_vocab));
    int32_t one[1] = {ids.back()};
    if (i + 1 < n) m.forward(one, c, logits.data());
  }
  return ids;
}

TEST(Stories260K, Llama2cAndGgufGiveIdenticalLogits) {
  LlamaModel a(load_checkpoint(stories("stories260K.bin")));
  LlamaModel b(load_checkpoint(stories("tinyllamas-stories-260k-f32.gguf")));
  ASSERT_EQ(a.config().n_vocab, b.config().n_vocab);
  std::vector<int32_t> ids = greedy(a, {1}, 40);  // a realistic sequence
  const int64_t V = a.config().n_vocab, n = int64_t(ids.size());
  std::vector<float> la(size_t(n * V)), lb(size_t(n * V));
  KVCache ca = a.new_cache(int(n)), cb = b.new_cache(int(n));
  a.forward(ids, ca, la.data());
  b.forward(ids, cb, lb.data());
  for (size_t i = 0; i < la.size(); ++i) ASSERT_NEAR(la[i], lb[i], 1e-5) << i;
}

TEST(Stories260K, GreedyStoryFromBos) {
  const std::string want =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
  for (const char* file : {"stories260K.bin", "tinyllamas-stories-260k-f32.gguf"}) {
    LlamaModel m(load_checkpoint(stories(file)));
    auto tok = load_tokenizer_for_model(stories(file));
    std::vector<int32_t> ids = greedy(m, {tok->bos_id}, 64);
    std::string text = tok->decode(ids);
    EXPECT_EQ(text.substr(0, want.size()), want) << file << ": " << text;
  }
}

}  // namespace
}  // namespace lowbit

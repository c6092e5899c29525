// SentencePiece tokenizer against the testbed-25m references (HF LlamaTokenizer, use_fast=False, legacy=True).
#include <gtest/gtest.h>

#include "../test_util.h"
#include "eval/ppl_texts.h"
#include "io/tokenizer.h"
#include "tokenizer_test_util.h"

namespace lowbit {
namespace {

const Tokenizer& testbed_tok() {
  static auto tok = load_tokenizer_for_model(test::model_path("testbed-25m"));
  return *tok;
}

TEST(SpmTokenizer, TestbedSettings) {
  const Tokenizer& tok = testbed_tok();
  EXPECT_EQ(tok.vocab_size(), 32000);
  EXPECT_EQ(tok.bos_id, 1);
  EXPECT_EQ(tok.eos_ids, std::vector<int32_t>{2});
  EXPECT_TRUE(tok.add_bos);
  EXPECT_EQ(tok.token_to_id("<s>"), 1);
  EXPECT_EQ(tok.token_to_id("</s>"), 2);
  EXPECT_EQ(tok.token_to_id("<unk>"), 0);
  EXPECT_EQ(tok.token_to_id("no such piece"), -1);
}

TEST(SpmTokenizer, EvalTextsMatchRefs) {
  const Json& refs = test::testbed_refs().at("tokens");
  for (const std::string& name : eval_text_names()) {
    SCOPED_TRACE(name);
    EvalText t = build_eval_text(name, test::paths());
    auto ids = testbed_tok().encode_with_bos(t.text);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids[0], 1);
    EXPECT_EQ(int64_t(ids.size()), refs.at(name).at("n").get<int64_t>());
    EXPECT_EQ(test::sha256_int32le(ids), refs.at(name).at("sha256_int32le").get<std::string>());
    if (name == "wikitext2") {
      auto golden = test::testbed_refs().at("golden").at("input_ids").get<std::vector<int32_t>>();
      ASSERT_EQ(golden.size(), 64u);
      EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + 64), golden);
    }
  }
}

TEST(SpmTokenizer, GreedyPromptAndRoundTrip) {
  const Tokenizer& tok = testbed_tok();
  // refs: greedy_ids = BOS + prompt + 32 generated tokens; the prompt part is encode_with_bos(prompt).
  const Json& g = test::testbed_refs().at("golden");
  auto prompt = tok.encode_with_bos(g.at("greedy_prompt").get<std::string>());
  auto greedy = g.at("greedy_ids").get<std::vector<int32_t>>();
  ASSERT_LE(prompt.size(), greedy.size());
  EXPECT_EQ(prompt, std::vector<int32_t>(greedy.begin(), greedy.begin() + prompt.size()));
  // Decoding the continuation (BOS dropped) gives the reference text.
  EXPECT_EQ(tok.decode(greedy), g.at("greedy_text").get<std::string>());
  for (std::string s : {"Hello world", "  two leading spaces", "line\nbreak\n\n", "naïve café 日本語"})
    EXPECT_EQ(tok.decode(tok.encode(s)), s) << s;
  EXPECT_TRUE(tok.encode("").empty());
  test::expect_one_line_error([&] { tok.decode(std::vector<int32_t>{5, 32000}); }, {"32000", "out of range"});
}

TEST(SpmTokenizer, Llama2TokenizerModel) {
  // Meta's LLaMA-2 tokenizer: "Hello world" is ▁Hello (15043) ▁world (3186), well known from llama.cpp's tests.
  auto tok = load_sentencepiece_tokenizer(test::model_path("tokenizers/llama2/tokenizer.model"));
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->encode("Hello world"), (std::vector<int32_t>{15043, 3186}));
  EXPECT_EQ(tok->encode_with_bos("Hello world"), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(tok->decode(std::vector<int32_t>{1, 15043, 3186, 2}), "Hello world");
}

TEST(SpmTokenizer, MalformedFilesGiveOneLineErrors) {
  std::string dir = test::temp_dir("spm-bad");
  test::expect_one_line_error([&] { load_sentencepiece_tokenizer(dir + "/missing.model"); }, {"missing.model"});
  // A tiktoken rank file is text, not a SentencePiece protobuf.
  std::string tiktoken = test::model_path("tokenizers/llama3/tokenizer.model");
  test::expect_one_line_error([&] { load_sentencepiece_tokenizer(tiktoken); }, {tiktoken, "SentencePiece"});
  test::write_bytes(dir + "/garbage.model", std::string("\x0a\xff\xff\xff\xff\x0f garbage", 14));
  test::expect_one_line_error([&] { load_sentencepiece_tokenizer(dir + "/garbage.model"); }, {"garbage.model"});
  test::write_bytes(dir + "/empty.model", "");
  test::expect_one_line_error([&] { load_sentencepiece_tokenizer(dir + "/empty.model"); }, {"empty.model"});
}

}  // namespace
}  // namespace lowbit

// The llama2.c and GGUF vocabularies of stories260K through the shared score-BPE tokenizer, checked against a
// direct transcription of llama2.c run.c's quadratic encode() reading tok512.bin on its own.
#include "io/score_bpe.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "../test_util.h"
#include "core/mmap.h"
#include "io/gguf.h"
#include "io_test_util.h"

namespace lowbit {
namespace {

using test::throws_error;

std::string tok512() {
  return test::model_path("stories260K") + "/tok512.bin";
}
std::string stories_gguf() {
  return test::model_path("stories260K") + "/tinyllamas-stories-260k-f32.gguf";
}

// run.c, as written there: dummy-prefix " " token, per-character lookup with byte fallback id = byte + 3,
// then merge the best-scoring adjacent pair (first strict maximum) until none is a piece.
struct RunCReference {
  std::vector<std::string> vocab;
  std::vector<float> scores;
  std::map<std::string, int> index;

  RunCReference() {
    std::string f = read_file(tok512());
    size_t p = 4;
    while (p < f.size()) {
      float s;
      int32_t len;
      std::memcpy(&s, &f[p], 4);
      std::memcpy(&len, &f[p + 4], 4);
      vocab.push_back(f.substr(p + 8, size_t(len)));
      scores.push_back(s);
      p += 8 + size_t(len);
    }
    for (size_t i = 0; i < vocab.size(); ++i) index.emplace(vocab[i], int(i));
  }
  int lookup(const std::string& s) const {
    auto it = index.find(s);
    return it == index.end() ? -1 : it->second;
  }
  std::vector<int32_t> encode(const std::string& text) const {
    std::vector<int32_t> t;
    if (text.empty()) return t;
    t.push_back(lookup(" "));
    std::string buf;
    for (size_t i = 0; i < text.size(); ++i) {
      if ((uint8_t(text[i]) & 0xC0) != 0x80) buf.clear();
      buf += text[i];
      if (i + 1 < text.size() && (uint8_t(text[i + 1]) & 0xC0) == 0x80 && buf.size() < 4) continue;
      int id = lookup(buf);
      if (id != -1) {
        t.push_back(id);
      } else {
        for (char c : buf) t.push_back(int32_t(uint8_t(c)) + 3);
      }
      buf.clear();
    }
    while (true) {
      float best = -1e10f;
      int best_id = -1, best_i = -1;
      for (size_t i = 0; i + 1 < t.size(); ++i) {
        int id = lookup(vocab[size_t(t[i])] + vocab[size_t(t[i + 1])]);
        if (id != -1 && scores[size_t(id)] > best) {
          best = scores[size_t(id)];
          best_id = id;
          best_i = int(i);
        }
      }
      if (best_i == -1) break;
      t[size_t(best_i)] = best_id;
      t.erase(t.begin() + best_i + 1);
    }
    return t;
  }
};

const std::vector<std::string> kTexts = {
    "Once upon a time",
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
    "Hello, world! \xC3\xA9 \xC3\xBC \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x99\x82",
    " leading space",
    "trailing space ",
    "multiple   spaces\nnew line\ttab",
    "a",
    " ",
    "<s> and </s> and <0x41> are plain text here",
    "invalid \xFF\xFE utf8 \x80 and a cut \xE6\x97",
};

TEST(ScoreBpe, OnceUponATime) {
  auto a = load_llama2c_tokenizer(tok512());
  auto g = load_gguf_tokenizer(stories_gguf());
  // From a Python transcription of run.c's encode() over tok512.bin.
  std::vector<int32_t> want = {403, 407, 261, 378};
  EXPECT_EQ(a->encode("Once upon a time"), want);
  EXPECT_EQ(g->encode("Once upon a time"), want);
  EXPECT_EQ(a->encode_with_bos("Once upon a time")[0], 1);
  EXPECT_EQ(a->vocab_size(), 512);
  EXPECT_EQ(g->vocab_size(), 512);
  EXPECT_EQ(a->bos_id, 1);
  EXPECT_EQ(g->bos_id, 1);
  EXPECT_TRUE(a->is_eos(2));
  EXPECT_TRUE(g->is_eos(2));
}

TEST(ScoreBpe, MatchesRunCAndRoundTrips) {
  RunCReference ref;
  auto a = load_llama2c_tokenizer(tok512());
  auto g = load_gguf_tokenizer(stories_gguf());
  for (const std::string& s : kTexts) {
    std::vector<int32_t> ids = a->encode(s);
    EXPECT_EQ(ids, ref.encode(s)) << s;
    EXPECT_EQ(g->encode(s), ids) << s;
    EXPECT_EQ(a->decode(ids), s);
    EXPECT_EQ(g->decode(ids), s);
  }
  EXPECT_TRUE(a->encode("").empty());
  // BOS/EOS are dropped when decoding; the dummy-prefix space after BOS too (run.c's decode).
  std::vector<int32_t> ids = a->encode_with_bos("Once upon");
  ids.push_back(2);
  EXPECT_EQ(a->decode(ids), "Once upon");
  EXPECT_TRUE(
      throws_error([&] { a->decode(std::vector<int32_t>{512}); }, {"tok512.bin", "512", "out of range"}));
}

TEST(ScoreBpe, RandomTextsMatchRunC) {
  // Random strings over a small alphabet (many ties and long merge chains) plus random bytes: the heap-based
  // merge order must give exactly run.c's ids.
  RunCReference ref;
  auto a = load_llama2c_tokenizer(tok512());
  std::mt19937 rng(7);
  const std::vector<std::string> alphabet = {"a", "e", "t",  "h",        " ",   "o",  "n",  "s",
                                             "i", ".", "\n", "\xC3\xA9", "the", " a", "ll", "\xFF"};
  for (int it = 0; it < 2000; ++it) {
    std::string s;
    int n = int(rng() % 60);
    for (int i = 0; i < n; ++i) {
      if (rng() % 10 == 0)
        s += char(rng() % 256);
      else
        s += alphabet[rng() % alphabet.size()];
    }
    std::vector<int32_t> ids = a->encode(s);
    ASSERT_EQ(ids, ref.encode(s)) << testing::PrintToString(s);
    ASSERT_EQ(a->decode(ids), s);
  }
}

TEST(ScoreBpe, GgufVocabularyEqualsTok512) {
  auto* a = dynamic_cast<ScoreBpeTokenizer*>(load_llama2c_tokenizer(tok512()).release());
  auto* g = dynamic_cast<ScoreBpeTokenizer*>(load_gguf_tokenizer(stories_gguf()).release());
  std::unique_ptr<ScoreBpeTokenizer> ha(a), hg(g);
  ASSERT_TRUE(a && g);
  for (int i = 3; i < 512; ++i) {  // 0-2: <unk> and BOS/EOS, spelled "\n<s>\n" by llama2.c's export
    EXPECT_EQ(a->vocab().pieces[size_t(i)], g->vocab().pieces[size_t(i)]) << i;
    EXPECT_EQ(a->vocab().scores[size_t(i)], g->vocab().scores[size_t(i)]) << i;
    EXPECT_EQ(a->vocab().kinds[size_t(i)], g->vocab().kinds[size_t(i)]) << i;
  }
  EXPECT_EQ(g->token_to_id("<s>"), 1);
  EXPECT_EQ(g->token_to_id(" the"), a->token_to_id(" the"));
  EXPECT_EQ(g->token_to_id("no such piece"), -1);
}

TEST(ScoreBpe, BadLlama2cTokenizerFiles) {
  std::string dir = test::temp_dir("tokbad");
  auto file = [](int32_t max_len, std::vector<std::pair<float, std::string>> toks,
                 int32_t len_override = -2) {
    std::string s;
    test::put(s, max_len);
    for (auto& [score, t] : toks) {
      test::put(s, score);
      test::put(s, len_override != -2 ? len_override : int32_t(t.size()));
      s += t;
    }
    return s;
  };
  auto bad = [&](const std::string& bytes, std::initializer_list<std::string> needles) {
    test::write_bytes(dir + "/tok.bin", bytes);
    return throws_error([&] { load_llama2c_tokenizer(dir + "/tok.bin"); }, needles);
  };
  std::vector<std::pair<float, std::string>> ok = {{0, "<unk>"}, {0, "\n<s>\n"}, {0, "\n</s>\n"}, {-1, " "}};
  std::string good = file(6, ok);
  test::write_bytes(dir + "/tok.bin", good);
  EXPECT_EQ(load_llama2c_tokenizer(dir + "/tok.bin")->vocab_size(), 4);
  for (size_t cut = 1; cut < good.size(); ++cut)
    if (cut != 44)  // the token boundary after EOS: a valid 3-token vocabulary
      EXPECT_TRUE(bad(good.substr(0, cut), {"tok.bin"})) << cut;
  EXPECT_TRUE(bad("", {"tok.bin", "truncated"}));
  EXPECT_TRUE(bad(file(0, ok), {"tok.bin", "max_token_length 0"}));
  EXPECT_TRUE(bad(file(4, ok), {"tok.bin", "length 5", "max_token_length 4"}));
  EXPECT_TRUE(bad(file(6, ok, -1), {"tok.bin", "length -1"}));
  EXPECT_TRUE(bad(file(6, {{0, "<unk>"}}), {"tok.bin", "only 1 tokens"}));
}

TEST(ScoreBpe, BadGgufTokenizers) {
  std::string dir = test::temp_dir("ggtok");
  auto bad = [&](const test::GgufBuilder& b, std::initializer_list<std::string> needles) {
    test::write_bytes(dir + "/v.gguf", b.build());
    return throws_error([&] { load_gguf_tokenizer(dir + "/v.gguf"); }, needles);
  };
  auto base = [](const std::string& model) {
    test::GgufBuilder b(3);
    b.kv_string("tokenizer.ggml.model", model);
    b.kv_strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>",
                                           "\xE2\x96\x81"
                                           "a",
                                           "\xE2\x96\x81", "a"});
    return b;
  };
  EXPECT_TRUE(bad(base("gpt2"), {"v.gguf", "'gpt2'", "not supported"}));
  test::GgufBuilder b = base("llama");
  b.kv_f32s("tokenizer.ggml.scores", {0, 0});
  EXPECT_TRUE(bad(b, {"v.gguf", "scores has 2 entries for 6 tokens"}));
  b = base("llama");
  b.kv_i32s("tokenizer.ggml.token_type", {2, 3, 3, 9, 1, 1});
  EXPECT_TRUE(bad(b, {"v.gguf", "token 3", "token_type 9"}));
  b = base("llama");
  b.kv_u32("tokenizer.ggml.eos_token_id", 6);
  EXPECT_TRUE(bad(b, {"v.gguf", "eos_token_id 6", "outside"}));
  test::GgufBuilder none(3);
  none.kv_string("tokenizer.ggml.model", "llama");
  EXPECT_TRUE(bad(none, {"v.gguf", "'tokenizer.ggml.tokens'", "missing"}));
  // Minimal valid: no scores or types; "\u2581a" becomes " a", what "a" with the dummy prefix merges into.
  b = base("llama");
  test::write_bytes(dir + "/ok.gguf", b.build());
  auto tok = load_gguf_tokenizer(dir + "/ok.gguf");
  EXPECT_EQ(tok->encode("a"), std::vector<int32_t>{3});
  EXPECT_EQ(tok->decode(std::vector<int32_t>{1, 3}), "a");
  EXPECT_TRUE(throws_error([&] { tok->encode("b"); }, {"ok.gguf", "cannot encode byte"}));
}

}  // namespace
}  // namespace lowbit

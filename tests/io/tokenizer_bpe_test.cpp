// LLaMA-3 byte-level BPE from tokenizer.json and from the tiktoken tokenizer.model against
// refs/llama3-tokenizer.json (HF tokenizers encode(text, add_special_tokens=False)).
#include <gtest/gtest.h>

#include <filesystem>

#include "../test_util.h"
#include "core/mmap.h"
#include "eval/ppl_texts.h"
#include "io/bpe_tokenizer.h"
#include "tokenizer_test_util.h"

namespace lowbit {
namespace {

std::string llama3_dir() { return test::model_path("tokenizers/llama3"); }

const Tokenizer& json_tok() {
  static auto tok = load_bpe_json_tokenizer(llama3_dir() + "/tokenizer.json");
  return *tok;
}
const Tokenizer& tiktoken_tok() {
  static auto tok = load_tiktoken_tokenizer(llama3_dir() + "/tokenizer.model");
  return *tok;
}

struct Named {
  const char* name;
  const Tokenizer& (*get)();
};
const Named kBoth[] = {{"tokenizer.json", json_tok}, {"tiktoken", tiktoken_tok}};

TEST(Llama3Tokenizer, EvalTextsMatchRefs) {
  const Json& refs = test::llama3_tokenizer_refs().at("texts");
  for (const std::string& name : eval_text_names()) {
    EvalText t = build_eval_text(name, test::paths());
    const Json& r = refs.at(name);
    auto first = r.at("first_32").get<std::vector<int32_t>>();
    for (const auto& tk : kBoth) {
      SCOPED_TRACE(name + " via " + tk.name);
      auto ids = tk.get().encode(t.text);  // the refs hold ids without BOS
      EXPECT_EQ(int64_t(ids.size()), r.at("n").get<int64_t>());
      EXPECT_EQ(test::sha256_int32le(ids), r.at("sha256_int32le").get<std::string>());
      ASSERT_GE(ids.size(), first.size());
      EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + first.size()), first);
    }
  }
}

TEST(Llama3Tokenizer, TrickyStrings) {
  const Json& tricky = test::llama3_tokenizer_refs().at("tricky");
  ASSERT_GE(tricky.size(), 30u);
  int specials = 0;
  for (const Json& c : tricky) {
    std::string text = c.at("text").get<std::string>();
    auto want = c.at("ids").get<std::vector<int32_t>>();
    bool special = text.find("<|begin_of_text|>") != std::string::npos;
    for (const auto& tk : kBoth) {
      SCOPED_TRACE(std::string(tk.name) + ": '" + text + "'");
      auto ids = tk.get().encode(text);
      if (special && std::string(tk.name) == "tiktoken") continue;  // checked in SpecialTokenStringInText
      EXPECT_EQ(ids, want);
      if (c.at("decoded_roundtrip").get<bool>()) EXPECT_EQ(tk.get().decode(ids), text);
    }
    specials += special;
  }
  EXPECT_EQ(specials, 1);
}

TEST(Llama3Tokenizer, SpecialTokenStringInText) {
  // The refs' note_special: HF parses "<|begin_of_text|>" in the text as token 128000; tiktoken (Meta's encode
  // with allowed_special empty) tokenizes the same characters as ordinary text.
  std::string text = "<|begin_of_text|> is a special token string";
  std::vector<int32_t> rest = {374, 264, 3361, 4037, 925};  // " is a special token string"
  auto hf = json_tok().encode(text);
  ASSERT_EQ(hf.size(), 6u);
  EXPECT_EQ(hf[0], 128000);
  EXPECT_EQ(std::vector<int32_t>(hf.begin() + 1, hf.end()), rest);
  EXPECT_EQ(json_tok().decode(hf), " is a special token string");  // BOS is dropped by decode

  auto tt = tiktoken_tok().encode(text);
  for (int32_t id : tt) EXPECT_LT(id, 128000);
  EXPECT_EQ(tiktoken_tok().decode(tt), text);
  // As plain text the string pre-tokenizes to "<|", "begin", "_of", "_text", "|>", then the rest; the HF path
  // gives the same ids for those pieces when they do not form the special string.
  std::vector<int32_t> want;
  for (const char* piece : {"<|", "begin_of_text", "|>"}) {
    auto p = json_tok().encode(piece);
    want.insert(want.end(), p.begin(), p.end());
  }
  want.insert(want.end(), rest.begin(), rest.end());
  EXPECT_EQ(tt, want);
}

TEST(Llama3Tokenizer, BosEosAndConfig) {
  for (const auto& tk : kBoth) {
    SCOPED_TRACE(tk.name);
    const Tokenizer& tok = tk.get();
    EXPECT_EQ(tok.vocab_size(), 128256);
    EXPECT_EQ(tok.bos_id, 128000);
    EXPECT_TRUE(tok.add_bos);  // tokenizer_config.json has no add_bos_token: the default (true)
    EXPECT_EQ(tok.eos_ids, std::vector<int32_t>{128001});  // tokenizer_config.json eos_token <|end_of_text|>
    EXPECT_EQ(tok.encode_with_bos("Hello world"), (std::vector<int32_t>{128000, 9906, 1917}));
    EXPECT_EQ(tok.token_to_id("<|eot_id|>"), 128009);
    EXPECT_EQ(tok.token_to_id("<|start_header_id|>"), 128006);
    EXPECT_EQ(tok.token_to_id("<|reserved_special_token_250|>"), 128255);
    EXPECT_EQ(tok.decode(std::vector<int32_t>{128000, 9906, 128006, 1917, 128001}), "Hello<|start_header_id|> world");
  }
}

TEST(Llama3Tokenizer, SpecialTokensMatchBetweenJsonAndTiktoken) {
  // Every added token of tokenizer.json has the same id in the tiktoken loader's hard-coded list (Meta's).
  Json j = parse_json_file(llama3_dir() + "/tokenizer.json");
  ASSERT_EQ(j.at("added_tokens").size(), 256u);
  for (const Json& a : j.at("added_tokens")) {
    std::string content = a.at("content").get<std::string>();
    EXPECT_EQ(tiktoken_tok().token_to_id(content), a.at("id").get<int32_t>()) << content;
  }
}

TEST(Llama3Tokenizer, Llama31ConfigAndModelDirectory) {
  namespace fs = std::filesystem;
  // A LLaMA-3.1 style directory: tokenizer.json + the 3.1 tokenizer_config.json (eos <|eot_id|>) + config.json.
  std::string dir = test::temp_dir("llama31");
  fs::create_symlink(llama3_dir() + "/tokenizer.json", dir + "/tokenizer.json");
  fs::copy_file(llama3_dir() + "/tokenizer_config.llama3_1.json", dir + "/tokenizer_config.json");
  test::write_bytes(dir + "/config.json", R"({"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]})");
  auto tok = load_tokenizer_for_model(dir);
  EXPECT_EQ(tok->bos_id, 128000);
  EXPECT_EQ(tok->eos_ids, (std::vector<int32_t>{128009, 128001, 128008}));
  EXPECT_EQ(tok->encode("Hello world"), (std::vector<int32_t>{9906, 1917}));

  // Only a tiktoken tokenizer.model: detected by content, not by name.
  std::string dir2 = test::temp_dir("llama3-tiktoken");
  fs::create_symlink(llama3_dir() + "/tokenizer.model", dir2 + "/tokenizer.model");
  test::write_bytes(dir2 + "/tokenizer_config.json", R"({"add_bos_token": false, "eos_token": "<|eot_id|>"})");
  auto tt = load_tokenizer_for_model(dir2);
  EXPECT_EQ(tt->vocab_size(), 128256);
  EXPECT_FALSE(tt->add_bos);
  EXPECT_EQ(tt->eos_ids, std::vector<int32_t>{128009});
  EXPECT_EQ(tt->encode_with_bos("Hello world"), (std::vector<int32_t>{9906, 1917}));

  // The real directory: tokenizer.json wins over tokenizer.model.
  auto real = load_tokenizer_for_model(llama3_dir());
  EXPECT_EQ(real->encode("<|eot_id|>"), std::vector<int32_t>{128009});  // HF path parses specials in text

  test::write_bytes(dir2 + "/config.json", R"({"eos_token_id": 999999})");
  test::expect_one_line_error([&] { load_tokenizer_for_model(dir2); }, {"config.json", "999999"});
  test::write_bytes(dir2 + "/tokenizer_config.json", R"({"bos_token": "<|nope|>"})");
  test::expect_one_line_error([&] { load_tokenizer_for_model(dir2); }, {"tokenizer_config.json", "<|nope|>"});
  std::string empty = test::temp_dir("no-tokenizer");
  test::expect_one_line_error([&] { load_tokenizer_for_model(empty); }, {empty, "tokenizer"});
}

TEST(Llama3Tokenizer, LongInputsAreLinearEnough) {
  // 200 KB of one letter is one pre-token: the heap-based merge must not be quadratic (this would take
  // minutes with a naive rescan) and must agree with the short reference pattern (runs of 8 a's: 70540).
  std::string a(200000, 'a');
  auto ids = json_tok().encode(a);
  EXPECT_EQ(json_tok().decode(ids), a);
  EXPECT_EQ(ids, tiktoken_tok().encode(a));
  std::string ws(100000, ' ');
  ws += "x";
  auto w = json_tok().encode(ws);
  EXPECT_EQ(json_tok().decode(w), ws);
}

TEST(BpeTokenizer, ByteLevelAlphabet) {
  EXPECT_EQ(byte_to_unicode('a'), U'a');
  EXPECT_EQ(byte_to_unicode(' '), U'\u0120');   // Ġ
  EXPECT_EQ(byte_to_unicode('\n'), U'\u010A');  // Ċ
  EXPECT_EQ(byte_to_unicode(0), U'\u0100');
  EXPECT_EQ(byte_to_unicode(0xAD), U'\u0143');  // the last remapped byte
  for (int b = 0; b < 256; ++b) EXPECT_EQ(unicode_to_byte(byte_to_unicode(uint8_t(b))), b);
  EXPECT_EQ(unicode_to_byte(U'\u0144'), -1);
  EXPECT_EQ(unicode_to_byte(U' '), -1);  // a raw space is not in the alphabet
}

TEST(BpeTokenizer, Utf8Lossy) {
  EXPECT_EQ(utf8_lossy("ok \xC3\xA4"), "ok \xC3\xA4");
  EXPECT_EQ(utf8_lossy("\xFF"), "\xEF\xBF\xBD");
  EXPECT_EQ(utf8_lossy("a\xF0\x9F\x98" "b"), "a\xEF\xBF\xBD" "b");  // truncated 4-byte sequence: one U+FFFD
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate: three
  EXPECT_EQ(utf8_lossy("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                // overlong
}

// A tiny byte-level tokenizer.json: vocab and merges written in the GPT-2 alphabet (Ġ = space).
std::string tiny_json(const std::string& merges, bool ignore_merges, const std::string& extra_vocab = "") {
  return R"({"model": {"type": "BPE", "ignore_merges": )" + std::string(ignore_merges ? "true" : "false") +
         R"(, "vocab": {"a": 0, "b": 1, "c": 2, "Ġ": 3, "ab": 4, "bc": 5, "abc": 6)" + extra_vocab +
         R"(}, "merges": )" + merges + R"(},
  "added_tokens": [{"id": 7, "content": "<X>", "special": true}],
  "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": " ?[a-z]+|\\s+"}, "behavior": "Isolated", "invert": false},
    {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]}})";
}

TEST(BpeTokenizer, MergePriorityAndIgnoreMerges) {
  // Lowest rank first: "b c" (rank 0) beats "a b", then "a bc" gives abc.
  auto t1 = load_bpe_json_tokenizer_from_text(tiny_json(R"(["b c", "a b", "a bc"])", false), "t1");
  EXPECT_EQ(t1->encode("abc"), std::vector<int32_t>{6});
  // "a b" first leaves (ab, c) and there is no "ab c" merge: [ab, c].
  auto t2 = load_bpe_json_tokenizer_from_text(tiny_json(R"(["a b", "b c", "a bc"])", false), "t2");
  EXPECT_EQ(t2->encode("abc"), (std::vector<int32_t>{4, 2}));
  // Same merges with ignore_merges: the whole pre-token "abc" is in the vocabulary and wins.
  auto t3 = load_bpe_json_tokenizer_from_text(tiny_json(R"([["a", "b"], ["b", "c"], ["a", "bc"]])", true), "t3");
  EXPECT_EQ(t3->encode("abc"), std::vector<int32_t>{6});
  // Ties at equal rank go to the leftmost pair: "aaa" -> (aa, a).
  auto t4 = load_bpe_json_tokenizer_from_text(tiny_json(R"(["a a"])", false, R"(, "aa": 8)"), "t4");
  EXPECT_EQ(t4->encode("aaa"), (std::vector<int32_t>{8, 0}));
  // Pre-tokens are merged separately; added tokens are split out first; unknown bytes are dropped (no unk).
  EXPECT_EQ(t1->encode("abc abc<X>ab\n"), (std::vector<int32_t>{6, 3, 6, 7, 4}));
  EXPECT_EQ(t1->decode(std::vector<int32_t>{6, 3, 7, 4}), "abc <X>ab");
  EXPECT_EQ(t1->bos_id, -1);  // no <|begin_of_text|> among its added tokens
  test::expect_one_line_error([&] { t1->decode(std::vector<int32_t>{8}); }, {"t1", "out of range"});
}

TEST(BpeTokenizer, MalformedTokenizerJsonGivesOneLineErrors) {
  struct Case {
    std::string text, expect;
  };
  std::string ok_pt =
      R"("pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})";
  std::vector<Case> cases = {
      {"not json", "malformed JSON"},
      {"[1, 2]", "not a JSON object"},
      {"{" + ok_pt + "}", "\"model\""},
      {R"({"model": {"type": "BPE", "merges": []}, )" + ok_pt + "}", "\"vocab\""},
      {R"({"model": {"type": "Unigram", "vocab": {}, "merges": []}, )" + ok_pt + "}", "BPE"},
      {R"({"model": {"vocab": {"a": 0}, "merges": ["a q"]}, )" + ok_pt + "}", "unknown token \"q\""},
      {R"({"model": {"vocab": {"a": 0}, "merges": ["a a"]}, )" + ok_pt + "}", "unknown token \"aa\""},
      {R"({"model": {"vocab": {"a": 0}, "merges": ["aa"]}, )" + ok_pt + "}", "merge 0"},
      {R"({"model": {"vocab": {"a": 0}, "merges": [7]}, )" + ok_pt + "}", "merge 0"},
      {R"({"model": {"vocab": {"a": "x"}, "merges": []}, )" + ok_pt + "}", "not an integer"},
      {R"({"model": {"vocab": {"a": -1}, "merges": []}, )" + ok_pt + "}", "out of range"},
      {R"({"model": {"vocab": {"a": 0, "b": 0}, "merges": []}, )" + ok_pt + "}", "used twice"},
      {R"({"model": {"vocab": {"a b": 0}, "merges": []}, )" + ok_pt + "}", "byte-level"},
      {R"({"model": {"vocab": {"a": 0}, "merges": []}})", "pre_tokenizer"},
      {R"({"model": {"vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [)"
       R"({"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"}, )"
       R"({"type": "ByteLevel", "use_regex": false}]}})",
       "regex"},
      {R"({"normalizer": {"type": "NFC"}, "model": {"vocab": {"a": 0}, "merges": []}, )" + ok_pt + "}",
       "normalizer"},
      {R"({"model": {"vocab": {"a": 0}, "merges": []}, "added_tokens": [{"id": "x", "content": "<s>"}], )" +
           ok_pt + "}",
       "added_tokens[0]"},
      {R"({"model": {"vocab": {"a": 0}, "merges": []}, "added_tokens": [{"id": 1, "content": ""}], )" + ok_pt +
           "}",
       "added_tokens[0]"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    test::expect_one_line_error([&] { load_bpe_json_tokenizer_from_text(c.text, "bad/tokenizer.json"); },
                                {"bad/tokenizer.json", c.expect});
  }
  std::string dir = test::temp_dir("bpe-bad");
  test::expect_one_line_error([&] { load_bpe_json_tokenizer(dir + "/tokenizer.json"); }, {dir + "/tokenizer.json"});
  test::write_bytes(dir + "/tokenizer.json", "{\"model\": ");
  test::expect_one_line_error([&] { load_bpe_json_tokenizer(dir + "/tokenizer.json"); }, {dir + "/tokenizer.json"});
  // A valid tiny tokenizer.json beside a broken tokenizer_config.json: the config file is named.
  test::write_bytes(dir + "/tokenizer.json", tiny_json(R"(["a b"])", false));
  test::write_bytes(dir + "/tokenizer_config.json", R"({"add_bos_token": "yes"})");
  test::expect_one_line_error([&] { load_bpe_json_tokenizer(dir + "/tokenizer.json"); },
                              {"tokenizer_config.json", "add_bos_token"});
}

TEST(BpeTokenizer, MalformedTiktokenGivesOneLineErrors) {
  std::string dir = test::temp_dir("tiktoken-bad");
  auto check = [&](const std::string& name, const std::string& content, const std::string& expect) {
    std::string p = dir + "/" + name;
    test::write_bytes(p, content);
    SCOPED_TRACE(name);
    test::expect_one_line_error([&] { load_tiktoken_tokenizer(p); }, {p, expect});
  };
  // All 256 single bytes with ranks 0..255, as a valid prefix.
  std::string bytes;
  auto b64 = [](const std::string& s) {
    static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string o;
    for (size_t i = 0; i < s.size(); i += 3) {
      uint32_t x = uint32_t(uint8_t(s[i])) << 16;
      if (i + 1 < s.size()) x |= uint32_t(uint8_t(s[i + 1])) << 8;
      if (i + 2 < s.size()) x |= uint8_t(s[i + 2]);
      o += a[x >> 18 & 63];
      o += a[x >> 12 & 63];
      o += i + 1 < s.size() ? a[x >> 6 & 63] : '=';
      o += i + 2 < s.size() ? a[x & 63] : '=';
    }
    return o;
  };
  for (int b = 0; b < 256; ++b) bytes += b64(std::string(1, char(b))) + " " + std::to_string(b) + "\n";
  check("empty.model", "", "no tokens");
  check("nospace.model", bytes + "YWI=\n", ":257:");
  check("badb64.model", bytes + "Y!I= 256\n", "base64");
  check("badrank.model", bytes + "YWI= 2x\n", "rank");
  check("duprank.model", bytes + "YWI= 255\n", "appears twice");
  check("gap.model", bytes + "YWI= 300\n", "without gaps");
  check("dupbytes.model", bytes + "YQ== 256\n", "same bytes");
  check("missingbyte.model", "YQ== 0\n", "byte 0x00");
  // The minimal valid file loads, merges by rank and round-trips.
  std::string p = dir + "/ok.model";
  test::write_bytes(p, bytes + b64("ab") + " 256\n");
  auto tok = load_tiktoken_tokenizer(p);
  EXPECT_EQ(tok->vocab_size(), 257 + 256);
  EXPECT_EQ(tok->encode("abab"), (std::vector<int32_t>{256, 256}));
  EXPECT_EQ(tok->bos_id, 257);
  EXPECT_EQ(tok->decode(tok->encode("x\xC3\xA4yz")), "x\xC3\xA4yz");
}

}  // namespace
}  // namespace lowbit

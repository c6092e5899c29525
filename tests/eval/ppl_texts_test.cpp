// Evaluation texts against an independent Python build of the HF rows (datasets' wikitext / ptb_text_only
// scripts, json.loads for C4), recorded as sha256 of the UTF-8 text.
#include <gtest/gtest.h>

#include <filesystem>

#include "../io/tokenizer_test_util.h"
#include "../test_util.h"
#include "core/sha256.h"
#include "eval/ppl_texts.h"

namespace lowbit {
namespace {

std::string sha(const std::string& s) { return sha256_hex(s.data(), s.size()); }

TEST(PplTexts, MatchPythonConstruction) {
  struct Want {
    const char* name;
    size_t bytes;
    const char* sha256;
  };
  // python3: rows = [row if row.strip() else "" for row in open(f)]; "\n\n".join(rows)   (wikitext2)
  //          "\n\n".join(l.strip() for l in open(valid)), " ".join(l.strip() for l in open(test))  (ptb, ptb-new)
  //          " ".join(json.loads(l)["text"] for l in open(jsonl))                            (c4-sample)
  const Want want[] = {
      {"wikitext2", 1296370, "696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83"},
      {"ptb", 396410, "352a9351af725c5d5d6ccdd38357a35ebfef8c79916364fdf458fa72a4fb91c3"},
      {"ptb-new", 442422, "900cfc61a7a63afcd086c5e1cce90554764eae65cb2ca9f5d4cac47be5f0f394"},
      {"c4-sample", 740929, "8c3705cfb5af217b15ca408f8407163813037d498f05b0b7583400b9be2ba557"},
  };
  for (const auto& w : want) {
    SCOPED_TRACE(w.name);
    EvalText t = build_eval_text(w.name, test::paths());
    EXPECT_EQ(t.name, w.name);
    EXPECT_EQ(t.text.size(), w.bytes);
    EXPECT_EQ(sha(t.text), w.sha256);
    ASSERT_EQ(t.files.size(), 1u);
    EXPECT_TRUE(path_exists(t.files[0]));
  }
  EvalText wt = build_eval_text("wikitext2", test::paths());
  EXPECT_EQ(wt.text.substr(0, 45), "\n\n = Robert Boulter = \n\n\n\n\n Robert Boulter is");
  EXPECT_TRUE(wt.note.empty());
  EXPECT_EQ(build_eval_text("c4-sample", test::paths()).note,
            "c4-sample: 300 documents of C4 (split unknown), NOT the C4 validation shard");
  EXPECT_EQ(eval_text_names(), (std::vector<std::string>{"wikitext2", "ptb", "ptb-new", "c4-sample"}));
}

TEST(PplTexts, ConventionsOnSmallFiles) {
  namespace fs = std::filesystem;
  std::string data = test::temp_dir("ppl-data");
  fs::create_directories(data + "/wikitext-2-raw");
  fs::create_directories(data + "/ptb");
  fs::create_directories(data + "/c4");
  SearchPaths sp{"", data, ""};
  // CRLF reads as "\n" (Python universal newlines); whitespace-only lines (incl. U+00A0) become "".
  test::write_bytes(data + "/wikitext-2-raw/wiki.test.raw", " \r\n = T = \n\xC2\xA0\n last");
  EXPECT_EQ(build_eval_text("wikitext2", sp).text, "\n\n = T = \n\n\n\n\n last");
  test::write_bytes(data + "/ptb/ptb.valid.txt", " a b \n\n c\n");
  test::write_bytes(data + "/ptb/ptb.test.txt", " a b \n c\t\n");
  EXPECT_EQ(build_eval_text("ptb", sp).text, "a b\n\n\n\nc");
  EXPECT_EQ(build_eval_text("ptb-new", sp).text, "a b c");
  test::write_bytes(data + "/c4/c4-sample.jsonl", "{\"text\": \"x\\u00e4\"}\n{\"text\": \"y\"}\n");
  EvalText c4 = build_eval_text("c4-sample", sp);
  EXPECT_EQ(c4.text, "x\xC3\xA4 y");
  EXPECT_EQ(c4.note, "c4-sample: 2 documents of C4 (split unknown), NOT the C4 validation shard");

  std::string raw = data + "/raw.txt";
  test::write_bytes(raw, " raw\r\ncontent\n");
  EXPECT_EQ(build_eval_text("text:" + raw, sp).text, " raw\r\ncontent\n");
  EXPECT_EQ(build_eval_text(raw, sp).text, " raw\r\ncontent\n");
  EXPECT_EQ(build_eval_text(raw, sp).name, raw);
}

TEST(PplTexts, ErrorsNameTheFileAndLine) {
  namespace fs = std::filesystem;
  std::string data = test::temp_dir("ppl-bad");
  fs::create_directories(data + "/c4");
  fs::create_directories(data + "/ptb");
  SearchPaths sp{"", data, ""};
  test::expect_one_line_error([&] { build_eval_text("wikitext3", sp); },
                              {"wikitext3", "wikitext2, ptb, ptb-new, c4-sample"});
  test::expect_one_line_error([&] { build_eval_text("wikitext2", sp); }, {"wiki.test.raw"});
  std::string c4 = data + "/c4/c4-sample.jsonl";
  test::write_bytes(c4, "{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n");
  test::expect_one_line_error([&] { build_eval_text("c4-sample", sp); }, {c4 + ":2"});
  test::write_bytes(c4, "{\"text\": \"ok\"}\n{\"body\": \"x\"}\n");
  test::expect_one_line_error([&] { build_eval_text("c4-sample", sp); }, {c4 + ":2", "text"});
  test::write_bytes(c4, "{\"text\": \"ok\"}\n\n");
  test::expect_one_line_error([&] { build_eval_text("c4-sample", sp); }, {c4 + ":2"});
  test::write_bytes(data + "/ptb/ptb.valid.txt", "fine\nbad \xFF byte\n");
  test::expect_one_line_error([&] { build_eval_text("ptb", sp); }, {"ptb.valid.txt:2", "UTF-8"});
  test::expect_one_line_error([&] { build_eval_text("text:" + data + "/nope.txt", sp); }, {"nope.txt"});
}

}  // namespace
}  // namespace lowbit

// Training data (train/data.h): Alpaca records and examples as qlora.py builds them (fixtures
// alpaca_fixture.jsonl and the same records as a JSON array in alpaca_fixture.json), malformed records named
// by file and line, plain-text windows on testbed-calib.txt, and the shuffled, resumable batch order.
#include "train/data.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <numeric>

#include "core/error.h"
#include "core/mmap.h"
#include "test_util.h"

namespace lowbit {
namespace {

std::string fixture(const std::string& name) {
  return (std::filesystem::path(__FILE__).parent_path() / name).string();
}

// One id per byte (byte + 3), BOS 1, EOS 2: token counts equal byte counts, so caps and splits are exact.
struct ByteTokenizer : Tokenizer {
  ByteTokenizer() {
    bos_id = 1;
    eos_ids = {2};
  }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    for (unsigned char c : text) ids.push_back(int32_t(c) + 3);
    return ids;
  }
  std::string decode(std::span<const int32_t> ids) const override {
    std::string s;
    for (int32_t id : ids)
      if (id >= 3) s += char(id - 3);
    return s;
  }
  int32_t vocab_size() const override { return 259; }
};

using test::error_of;

const char* kNoInputHead =
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n";
const char* kInputHead =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write "
    "a response that appropriately completes the request.\n\n### Instruction:\n";

TEST(TrainDataAlpaca, JsonLinesAndJsonArrayGiveTheSameRecords) {
  const auto lines = read_alpaca_file(fixture("alpaca_fixture.jsonl"));
  const auto array = read_alpaca_file(fixture("alpaca_fixture.json"));
  ASSERT_EQ(lines.size(), 6u);
  ASSERT_EQ(array.size(), 6u);
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i].instruction, array[i].instruction) << i;
    EXPECT_EQ(lines[i].input, array[i].input) << i;
    EXPECT_EQ(lines[i].output, array[i].output) << i;
  }
  // JSON Lines: the record's line (line 3 is blank); array: the line each object opens on.
  const std::vector<int64_t> line_numbers{1, 2, 4, 5, 6, 7}, array_lines{2, 7, 12, 13, 18, 19};
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(lines[i].line, line_numbers[i]) << i;
    EXPECT_EQ(array[i].line, array_lines[i]) << i;
  }
  EXPECT_EQ(lines[1].output, "Le chat dort sur le canap\xc3\xa9.");
  EXPECT_EQ(lines[3].input, "");  // absent
  EXPECT_EQ(lines[5].input, "");  // null
  EXPECT_EQ(lines[5].output, "");
}

TEST(TrainDataAlpaca, PromptTextIsQloras) {
  const auto r = read_alpaca_file(fixture("alpaca_fixture.jsonl"));
  EXPECT_EQ(alpaca_prompt(r[0]),
            std::string(kNoInputHead) + "Name the largest planet in the solar system.\n\n### Response: ");
  EXPECT_EQ(alpaca_prompt(r[1]),
            std::string(kInputHead) +
                "Translate the sentence into French.\n\n### Input:\nThe cat sleeps on the "
                "sofa.\n\n### Response: ");
  EXPECT_EQ(alpaca_prompt(r[3]), std::string(kNoInputHead) + "Write a haiku about rain.\n\n### Response: ");
}

TEST(TrainDataAlpaca, SourceThenTargetWithLossOnTheTargetOnly) {
  const ByteTokenizer tok;
  for (const AlpacaRecord& r : read_alpaca_file(fixture("alpaca_fixture.jsonl"))) {
    const TrainExample ex = alpaca_example(r, tok);
    std::vector<int32_t> source{1}, target = tok.encode(r.output);
    for (int32_t id : tok.encode(alpaca_prompt(r))) source.push_back(id);
    target.push_back(2);
    std::vector<int32_t> want = source;
    want.insert(want.end(), target.begin(), target.end());
    ASSERT_EQ(ex.tokens, want) << r.line;
    ASSERT_EQ(ex.labels.size(), ex.tokens.size());
    // Positions before the last source token predict source tokens: ignored. From the last source token on,
    // each position predicts the next target token, the last one EOS; the final position predicts nothing.
    for (size_t t = 0; t + 1 < source.size(); ++t) EXPECT_EQ(ex.labels[t], kIgnoreLabel) << t;
    for (size_t t = source.size() - 1; t + 1 < ex.tokens.size(); ++t)
      EXPECT_EQ(ex.labels[t], ex.tokens[t + 1]);
    EXPECT_EQ(ex.labels.back(), kIgnoreLabel);
    EXPECT_EQ(ex.labels[ex.tokens.size() - 2], 2);  // EOS is trained
    EXPECT_EQ(count_loss_tokens(ex), int64_t(target.size()));
  }
}

TEST(TrainDataAlpaca, CapsKeepTheFirstTokensOfSourceAndTarget) {
  const ByteTokenizer tok;
  const AlpacaRecord r = read_alpaca_file(fixture("alpaca_fixture.jsonl"))[1];
  AlpacaOptions opt;
  opt.source_max_len = 10;
  opt.target_max_len = 6;
  const TrainExample ex = alpaca_example(r, tok, opt);
  ASSERT_EQ(ex.tokens.size(), 16u);
  EXPECT_EQ(tok.decode(std::span(ex.tokens).first(10)), "Below is ");  // BOS + 9 bytes: the prompt's start
  EXPECT_EQ(ex.tokens[0], 1);
  EXPECT_EQ(tok.decode(std::span(ex.tokens).subspan(10)), "Le cha");  // the output's start; no EOS
  EXPECT_EQ(count_loss_tokens(ex), 6);
  // Default caps (384, 128) on a long record: 384 + 128 tokens, EOS cut off.
  AlpacaRecord big{std::string(1000, 'x'), "", std::string(1000, 'y'), 1};
  const TrainExample b = alpaca_example(big, tok);
  EXPECT_EQ(b.tokens.size(), 512u);
  EXPECT_EQ(b.tokens.back(), 'y' + 3);
  EXPECT_EQ(count_loss_tokens(b), 128);
}

TEST(TrainDataAlpaca, TrainOnSourcePredictsEveryTokenAfterTheFirst) {
  const ByteTokenizer tok;
  const AlpacaRecord r = read_alpaca_file(fixture("alpaca_fixture.jsonl"))[4];
  AlpacaOptions opt;
  opt.train_on_source = true;
  const TrainExample ex = alpaca_example(r, tok, opt);
  for (size_t t = 0; t + 1 < ex.tokens.size(); ++t) EXPECT_EQ(ex.labels[t], ex.tokens[t + 1]);
  EXPECT_EQ(ex.labels.back(), kIgnoreLabel);
  EXPECT_EQ(count_loss_tokens(ex), int64_t(ex.tokens.size()) - 1);
}

TEST(TrainDataAlpaca, MalformedRecordsNameFileAndLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "d.jsonl:1: empty file"},
      {" \n\t\n", "d.jsonl:1: empty file"},
      {R"({"instruction": "a", "output": "b"})"
       "\n{\"instruction\": \"a\",\n",
       "d.jsonl:2: bad JSON in the record starting here: parse error"},
      {"\n\n\"text\"\n", "d.jsonl:3: a record must be a JSON object (this is string)"},
      {"\n\n[1, 2]\n", "d.jsonl:3: a record must be a JSON object (this is number)"},  // '[' first: an array
      {"{\"instruction\": \"a\", \"output\": \"b\"}\n42\n",
       "d.jsonl:2: a record must be a JSON object (this is number)"},
      {R"({"output": "b"})", "d.jsonl:1: missing field 'instruction'"},
      {R"({"instruction": "a"})", "d.jsonl:1: missing field 'output'"},
      {R"({"instruction": ["a"], "output": "b"})",
       "d.jsonl:1: field 'instruction' is not a string (it is array)"},
      {R"({"instruction": "a", "output": null})", "d.jsonl:1: field 'output' is not a string (it is null)"},
      {R"({"instruction": "a", "input": 3, "output": "b"})",
       "d.jsonl:1: field 'input' is not a string (it is number)"},
      {"{\"instruction\": \"a\", \"output\": \"\xff\"}", "d.jsonl:1: bad JSON"},
      {"[]", "d.jsonl:1: the array holds no records"},
      {"\n[\n {\"instruction\": \"a\", \"output\": \"b\"},\n 7\n]",
       "d.jsonl:4: a record must be a JSON object (this is number)"},
      {"[\n {\"instruction\": \"a\", \"output\": \"b\"},\n\n {\"instruction\": \"a\"}\n]",
       "d.jsonl:4: missing field 'output'"},
      {"[\n {\"instruction\": \"a\", \"output\": \"b\"},\n]", "d.jsonl:3: bad JSON: expected a record"},
      {"[\n {\"instruction\": \"a\", \"output\": \"b\"}",
       "d.jsonl:2: bad JSON: the array opened at line 1 is not closed"},
      {"[\n {\"instruction\": \"a\", \"output\": \"b}\n]", "d.jsonl:2: bad JSON: unterminated string"},
      {"[{\"instruction\": \"a\", \"output\": \"b\"}]\n{}", "d.jsonl:2: bad JSON: text after the array"},
      {"[\n {\"instruction\": \"a\", \"output\": \"b\",}\n]",
       "d.jsonl:2: bad JSON in the record starting here"},
  };
  for (const auto& [text, want] : cases) {
    const std::string got = error_of([&] { parse_alpaca(text, "d.jsonl"); });
    EXPECT_EQ(got.rfind(want, 0), 0u) << "input: " << text << "\nerror: " << got;
    EXPECT_EQ(got.find('\n'), std::string::npos) << got;
  }
  EXPECT_NE(error_of([] { read_alpaca_file("/nonexistent/alpaca.json"); }).find("/nonexistent/alpaca.json"),
            std::string::npos);
}

TEST(TrainDataAlpaca, SaysWhenTheDataSetIsMissing) {
  const std::string dir = test::temp_dir("alpaca");
  const std::string msg = alpaca_missing_message(dir);
  EXPECT_EQ(msg.rfind(dir + "/alpaca/alpaca_data.json: Alpaca data not found.", 0), 0u) << msg;
  EXPECT_NE(msg.find("tatsu-lab/alpaca"), std::string::npos);
  EXPECT_EQ(msg.find('\n'), std::string::npos);
  EXPECT_NE(alpaca_missing_message("").find("LOWBIT_DATA"), std::string::npos);
  std::filesystem::create_directories(dir + "/alpaca");
  test::write_bytes(alpaca_default_path(dir), "[]");
  EXPECT_EQ(alpaca_missing_message(dir), "");
}

TEST(TrainDataAlpaca, TestbedTokenizerSplitsSourceAndTarget) {
  const std::string mp = test::model_path("testbed-25m");
  if (!std::filesystem::exists(mp)) GTEST_SKIP() << mp << " not present";
  const auto tok = load_tokenizer_for_model(mp);
  const auto records = read_alpaca_file(fixture("alpaca_fixture.json"));
  const auto examples = alpaca_examples(records, *tok);
  ASSERT_EQ(examples.size(), records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    std::vector<int32_t> want{1};
    for (int32_t id : tok->encode(alpaca_prompt(records[i]))) want.push_back(id);
    const size_t source_len = want.size();
    for (int32_t id : tok->encode(records[i].output)) want.push_back(id);
    want.push_back(2);
    EXPECT_EQ(examples[i].tokens, want) << i;
    EXPECT_EQ(count_loss_tokens(examples[i]), int64_t(want.size() - source_len)) << i;
    EXPECT_EQ(tok->decode(std::span(examples[i].tokens).first(source_len)), alpaca_prompt(records[i]));
  }
}

TEST(TrainDataText, WindowsDropTheTailAndPredictTheNextToken) {
  std::vector<int32_t> ids(23);
  std::iota(ids.begin(), ids.end(), 100);
  const auto w = text_windows(ids, 5, "t");
  ASSERT_EQ(w.size(), 4u);
  for (size_t k = 0; k < w.size(); ++k) {
    EXPECT_EQ(w[k].tokens, std::vector<int32_t>(ids.begin() + 5 * k, ids.begin() + 5 * k + 5));
    EXPECT_EQ(w[k].labels, (std::vector<int32_t>{w[k].tokens[1], w[k].tokens[2], w[k].tokens[3],
                                                 w[k].tokens[4], kIgnoreLabel}));
  }
  EXPECT_EQ(error_of([&] { text_windows(std::span(ids).first(4), 5, "t"); }),
            "t: 4 tokens, fewer than one window of 5");
  EXPECT_NE(error_of([&] { text_windows(ids, 1, "t"); }).find("at least 2 tokens"), std::string::npos);
}

TEST(TrainDataText, TestbedCalibWindows) {
  const std::string mp = test::model_path("testbed-25m");
  const std::string calib = test::data_path("calib/testbed-calib.txt");
  if (!std::filesystem::exists(mp) || !std::filesystem::exists(calib)) GTEST_SKIP() << "testbed not present";
  const auto tok = load_tokenizer_for_model(mp);
  // The first 256 KiB (to whole lines) of the calibration text: the whole 2.8 MB takes 8 s per tokenization.
  std::string text = read_file(calib).substr(0, 256 << 10);
  text.resize(text.rfind('\n') + 1);
  const std::string path = test::temp_dir("calib") + "/calib-head.txt";
  test::write_bytes(path, text);
  const std::vector<int32_t> ids = tok->encode_with_bos(text);
  const auto w = text_file_examples(path, *tok, 2048);
  ASSERT_EQ(w.size(), ids.size() / 2048);
  ASSERT_GE(w.size(), 20u);
  EXPECT_EQ(w[0].tokens[0], 1);  // BOS once, at the start of the stream
  for (size_t k = 0; k < w.size(); ++k) {
    ASSERT_EQ(w[k].tokens, std::vector<int32_t>(ids.begin() + 2048 * k, ids.begin() + 2048 * (k + 1))) << k;
    ASSERT_EQ(count_loss_tokens(w[k]), 2047);
    ASSERT_EQ(w[k].labels[100], w[k].tokens[101]);
    if (k > 0) EXPECT_NE(w[k].tokens[0], 1) << k;  // no BOS at later windows' starts
  }
}

TEST(TrainDataSampler, SplitMix64MatchesItsPublishedOutput) {
  // The first outputs from seed 1234567 of Vigna's reference splitmix64.c.
  SplitMix64 r{1234567};
  for (uint64_t want : {6457827717110365317ull, 3203168211198807973ull, 9817491932198370423ull,
                        4593380528125082431ull, 16408922859458223821ull})
    EXPECT_EQ(r.next(), want);
  SplitMix64 b{7};
  for (int i = 0; i < 1000; ++i) EXPECT_LT(b.below(3), 3u);
  EXPECT_EQ(b.below(1), 0u);
}

TEST(TrainDataSampler, EpochOrdersArePinnedPermutations) {
  // Pinned (values from a separate Python restatement of SplitMix64 + Fisher-Yates) so that a change of
  // generator or shuffle, which would change every training run, is noticed.
  EXPECT_EQ(epoch_order(10, 42, 0), (std::vector<int64_t>{2, 3, 9, 7, 5, 8, 6, 4, 0, 1}));
  EXPECT_EQ(epoch_order(10, 42, 1), (std::vector<int64_t>{0, 8, 1, 6, 4, 3, 5, 9, 2, 7}));
  EXPECT_EQ(epoch_order(1, 42, 0), (std::vector<int64_t>{0}));
  EXPECT_TRUE(epoch_order(0, 42, 0).empty());
  auto o = epoch_order(1000, 3, 5);
  EXPECT_EQ(o, epoch_order(1000, 3, 5));
  EXPECT_NE(o, epoch_order(1000, 4, 5));
  EXPECT_NE(o, epoch_order(1000, 3, 6));
  std::sort(o.begin(), o.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(o[size_t(i)], i);
}

TEST(TrainDataSampler, BatchesCoverEachEpochOnce) {
  BatchSampler s(10, 4, 9);
  EXPECT_EQ(s.batches_per_epoch(), 3);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> seen;
    for (size_t want : {4u, 4u, 2u}) {
      const auto b = s.next();
      EXPECT_EQ(b.size(), want);
      EXPECT_EQ(s.state().epoch, epoch);
      seen.insert(seen.end(), b.begin(), b.end());
    }
    EXPECT_EQ(seen, epoch_order(10, 9, epoch));
  }
  BatchSampler d(10, 4, 9, /*drop_last=*/true);
  EXPECT_EQ(d.batches_per_epoch(), 2);
  d.next();
  d.next();
  const std::vector<int64_t> epoch1 = epoch_order(10, 9, 1);
  EXPECT_EQ(d.next(), std::vector<int64_t>(epoch1.begin(), epoch1.begin() + 4));
  EXPECT_EQ(d.state().epoch, 1);
}

TEST(TrainDataSampler, ResumesExactlyFromSavedState) {
  for (bool drop_last : {false, true}) {
    BatchSampler whole(11, 3, 77, drop_last);
    std::vector<std::vector<int64_t>> want;
    for (int i = 0; i < 20; ++i) want.push_back(whole.next());
    for (int cut : {0, 1, 3, 4, 7, 13}) {
      BatchSampler first(11, 3, 77, drop_last);
      for (int i = 0; i < cut; ++i) first.next();
      const std::string saved = first.to_json();
      BatchSampler resumed(11, 3, 77, drop_last);
      resumed.restore_json(saved, "state.json");
      for (int i = cut; i < 20; ++i) ASSERT_EQ(resumed.next(), want[size_t(i)]) << cut << " " << i;
    }
  }
}

TEST(TrainDataSampler, RestoreRejectsOtherDataAndBadState) {
  BatchSampler s(11, 3, 77);
  s.next();
  const std::string saved = s.to_json();
  EXPECT_NE(error_of([&] {
              BatchSampler(12, 3, 77).restore_json(saved, "st.json");
            }).find("st.json: sampler state is for 11 examples, batch 3, seed 77"),
            std::string::npos);
  EXPECT_NE(error_of([&] { BatchSampler(11, 3, 78).restore_json(saved, "st.json"); }).find("seed 77"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] { BatchSampler(11, 3, 77).restore_json("{", "st.json"); }).find("st.json: malformed JSON"),
      std::string::npos);
  EXPECT_NE(error_of([&] { BatchSampler(11, 3, 77).restore_json("[1]", "st.json"); }).find("integer 'epoch'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { BatchSampler(11, 3, 77).restore({0, 12}); }).find("outside"), std::string::npos);
  EXPECT_NE(error_of([&] {
              BatchSampler(11, 3, 77, true).restore({0, 10});
            }).find("outside"),
            std::string::npos);
  EXPECT_NE(error_of([] { BatchSampler(0, 3, 1); }).find("no training examples"), std::string::npos);
  EXPECT_NE(error_of([] { BatchSampler(2, 3, 1, true); }).find("do not fill one batch"), std::string::npos);
  // A seed above 2^53 survives the JSON round trip.
  BatchSampler big(5, 2, 0xFFFFFFFFFFFFFFFFull);
  big.next();
  BatchSampler again(5, 2, 0xFFFFFFFFFFFFFFFFull);
  again.restore_json(big.to_json(), "st.json");
  EXPECT_EQ(again.next(), big.next());
}

}  // namespace
}  // namespace lowbit

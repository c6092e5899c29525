// The CLI end to end: bad inputs give one line on stderr naming the file and a non-zero exit, never a crash;
// good inputs work.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/mmap.h"
#include "test_util.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;

// Expects exit code 1 and exactly one line on stderr containing every needle.
void expect_clean_error(const test::CliResult& r, std::initializer_list<std::string> needles) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "more than one line: " << r.err;
  for (const auto& n : needles)
    EXPECT_NE(r.err.find(n), std::string::npos) << "missing '" << n << "' in: " << r.err;
}

// A command-line (CLI11) error: a non-zero exit and exactly one line on stderr containing every needle.
void expect_usage_error(const test::CliResult& r, std::initializer_list<std::string> needles) {
  EXPECT_NE(r.exit_code, 0) << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "more than one line: " << r.err;
  for (const auto& n : needles)
    EXPECT_NE(r.err.find(n), std::string::npos) << "missing '" << n << "' in: " << r.err;
}

// A copy of testbed-25m's small files plus symlinks to the shards, which a test may then break.
std::string testbed_copy(const std::string& tag) {
  std::string dir = test::temp_dir(tag), src = test::model_path("testbed-25m");
  for (auto& e : fs::directory_iterator(src)) {
    const std::string name = e.path().filename().string();
    if (name.ends_with(".safetensors"))
      fs::create_symlink(fs::absolute(e.path()), dir + "/" + name);
    else
      fs::copy_file(e.path(), dir + "/" + name);
  }
  return dir;
}

TEST(Cli, MissingModel) {
  expect_clean_error(test::run_cli("info /nonexistent/model"), {"/nonexistent/model", "not found"});
}

TEST(Cli, MalformedConfigJson) {
  std::string dir = testbed_copy("badcfg");
  test::write_bytes(dir + "/config.json", "{\"hidden_size\": 384,");
  expect_clean_error(test::run_cli("info " + dir), {"config.json", "JSON"});
}

TEST(Cli, MissingShard) {
  std::string dir = testbed_copy("noshard");
  fs::remove(dir + "/model-00002-of-00003.safetensors");
  expect_clean_error(test::run_cli("info " + dir), {"model-00002-of-00003.safetensors"});
}

TEST(Cli, TruncatedShard) {
  std::string dir = testbed_copy("trunc");
  const std::string shard = dir + "/model-00001-of-00003.safetensors";
  std::string bytes = read_file(fs::read_symlink(shard).string());
  fs::remove(shard);
  test::write_bytes(shard, bytes.substr(0, bytes.size() / 2));
  expect_clean_error(test::run_cli("info " + dir), {"model-00001-of-00003.safetensors"});
}

TEST(Cli, ShapeMismatchWithConfig) {
  std::string dir = testbed_copy("shape");
  std::string cfg = read_file(dir + "/config.json");
  cfg.replace(cfg.find("\"intermediate_size\": 1024"), 25, "\"intermediate_size\": 1000");
  test::write_bytes(dir + "/config.json", cfg);
  expect_clean_error(test::run_cli("info " + dir), {"safetensors", "mlp", "shape"});
}

TEST(Cli, WrongGgufMagicAndVersion) {
  std::string dir = test::temp_dir("gguf");
  std::string bytes = read_file(test::model_path("stories260K/tinyllamas-stories-260k-f32.gguf"));
  std::string bad = bytes;
  bad[0] = 'X';
  test::write_bytes(dir + "/bad.gguf", bad);
  expect_clean_error(test::run_cli("info " + dir + "/bad.gguf"), {"bad.gguf"});
  bad = bytes;
  bad[4] = 9;  // version 9
  test::write_bytes(dir + "/v9.gguf", bad);
  expect_clean_error(test::run_cli("info " + dir + "/v9.gguf"), {"v9.gguf", "version"});
}

TEST(Cli, UnknownDatasetAndBadOption) {
  expect_clean_error(test::run_cli("ppl stories260K/stories260K.bin -d nosuchset"), {"nosuchset"});
  auto r = test::run_cli("ppl stories260K/stories260K.bin --seqlen 1");
  EXPECT_NE(r.exit_code, 0);
}

TEST(Cli, InfoAndGenerateOnStories) {
  auto r = test::run_cli("info stories260K/stories260K.bin --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json j = parse_json_text(r.out, "info output");
  EXPECT_EQ(j["n_layer"], 5);
  EXPECT_EQ(j["rope_style"], "interleaved");
  r = test::run_cli("generate stories260K/stories260K.bin -n 20");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Once upon a time", 0), 0u) << r.out;
}

TEST(Cli, SynthWritesALoadableCheckpoint) {
  std::string dir = test::temp_dir("synth");
  auto r = test::run_cli("synth --shape llama3.2-1b --layers 1 --dtype bf16 --out " + dir + "/m");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli("info " + dir + "/m --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json j = parse_json_text(r.out, "info output");
  EXPECT_EQ(j["n_embd"], 2048);
  EXPECT_EQ(j["n_kv_head"], 8);
  EXPECT_EQ(j["rope_scaling"], "llama3");
  EXPECT_EQ(j["parameters"].get<int64_t>(),
            128256LL * 2048 + 2048 * 2 + 2048LL * 2048 * 2 + 512LL * 2048 * 2 + 8192LL * 2048 * 3 + 2048);
}

// CLI11 converts "-3" into an int count without complaint; each count option must reject it by name.
TEST(Cli, NegativeCountsAreRejected) {
  const std::string m = "stories260K/stories260K.bin", out = test::temp_dir("negcount") + "/m";
  expect_usage_error(test::run_cli("eval " + m + " --limit -3"), {"--limit", "-3"});
  expect_usage_error(test::run_cli("eval " + m + " --limit=-3"), {"--limit", "-3"});
  expect_usage_error(test::run_cli("eval " + m + " --num-fewshot -2"), {"--num-fewshot", "-2", "-1"});
  expect_usage_error(test::run_cli("eval " + m + " --max-length 1"), {"--max-length"});
  expect_usage_error(test::run_cli("ppl " + m + " --max-windows -1"), {"--max-windows", "-1"});
  expect_usage_error(test::run_cli("ppl " + m + " --seqlen -5"), {"--seqlen", "-5"});
  expect_usage_error(test::run_cli("generate " + m + " -n -1"), {"--tokens", "-1"});
  expect_usage_error(test::run_cli("synth --shape testbed-25m --layers -1 --out " + out), {"--layers", "-1"});
  expect_usage_error(test::run_cli("-t -2 info " + m), {"--threads", "-2"});
  expect_usage_error(test::run_cli("info " + m + " --threads -2"), {"--threads", "-2"});
  EXPECT_FALSE(std::filesystem::exists(out));
  // The documented sentinel still works: --num-fewshot -1 is each task's default.
  auto r = test::run_cli("eval " + m + " --tasks piqa --limit 1 --num-fewshot -1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"piqa\": 0"), std::string::npos) << r.out;  // config.num_fewshot: piqa's default
}

// --models-dir, --data-dir and -t/--threads are accepted after every subcommand (nested ones too), and
// take effect there: a missing folder given after the subcommand is the one the error names.
TEST(Cli, GlobalOptionsAfterTheSubcommand) {
  const std::string none = "/nonexistent-lowbit-dir", m = "stories260K/stories260K.bin";
  const std::string dir = test::temp_dir("globalopts");
  for (const std::string cmd :
       {"info " + m, "tokenize " + m + " --text hi", "generate " + m + " -n 2", "ppl " + m, "eval " + m,
        "quantize " + m + " --method rtn --wbits 4 --out " + dir + "/q"}) {
    expect_clean_error(test::run_cli(cmd + " -t 1 --models-dir " + none), {none});
    expect_clean_error(test::run_cli(cmd + " --threads 1 --models-dir=" + none), {none});
  }
  expect_clean_error(test::run_cli("ppl " + m + " -d ptb --data-dir " + none), {none});
  expect_clean_error(test::run_cli("eval " + m + " --tasks piqa --data-dir " + none), {none});
  expect_clean_error(test::run_cli("study quick --check --data-dir " + none), {none});
  // Before and after mix: the later one is used.
  auto r = test::run_cli("--models-dir " + none + " info stories260K.bin --models-dir " +
                         test::model_path("stories260K") + " -t 1");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli("synth --shape testbed-25m --layers 1 --out " + dir + "/s -t 1 --models-dir " + none);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  test::write_bytes(dir + "/empty.sqlite", "");
  r = test::run_cli("study merge --store " + dir + "/merged.sqlite " + dir +
                    "/empty.sqlite -t 1 --models-dir " + none + " --data-dir " + none);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  expect_clean_error(
      test::run_cli("report " + dir + "/merged.sqlite -o " + dir + "/r --data-dir " + none + " -t 1"),
      {"no results to report"});
  // A nested subcommand does not take its parent's own options.
  expect_usage_error(
      test::run_cli("study merge --store " + dir + "/merged.sqlite " + dir + "/empty.sqlite --check"),
      {"--check"});
}

}  // namespace
}  // namespace lowbit

namespace lowbit {
namespace {

// lowbit finetune end to end on testbed-25m with tiny settings: a few QLoRA / IR-QLoRA steps on plain text,
// the adapter evaluated with --adapter, a resumed run reporting where it resumed, bad data named by
// file:line. (stories260K's n_ff of 172 is not a multiple of NF4's 64-weight blocks.)
TEST(Cli, FinetuneThenEvaluateWithTheAdapter) {
  const std::string dir = test::temp_dir("cli_finetune");
  std::string text;
  for (int i = 0; i < 40; ++i)
    text += "Once upon a time, there was a little girl named Lily. She liked to play. ";
  test::write_bytes(dir + "/train.txt", text);
  const std::string common = "finetune testbed-25m --data " + dir +
                             "/train.txt --seq-len 32 --batch 2 --micro-batch 1 --rank 4 --save-every 1 ";
  for (const char* method : {"qlora", "ir-qlora"}) {
    SCOPED_TRACE(method);
    const std::string out = dir + "/" + method;
    auto r = test::run_cli(common + "--method " + method + " --steps 2 --out " + out);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("as plain text"), std::string::npos) << r.err;  // says it is not Alpaca
    EXPECT_NE(r.out.find(std::string(method) + ": 2 steps"), std::string::npos) << r.out;
    EXPECT_TRUE(fs::exists(out + "/adapter_model.safetensors"));
    r = test::run_cli("ppl testbed-25m --adapter " + out + " -d " + dir + "/train.txt --seqlen 64");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("ppl"), std::string::npos) << r.out;
  }
  // The same command again finds the finished checkpoint and does no step.
  auto r = test::run_cli(common + "--method qlora --steps 2 --out " + dir + "/qlora");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("resuming from"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("(0 after resuming at 2)"), std::string::npos) << r.out;
  // A malformed Alpaca record: one line naming file and line.
  test::write_bytes(dir + "/bad.jsonl",
                    "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": 3}\n");
  expect_clean_error(
      test::run_cli("finetune testbed-25m --data " + dir + "/bad.jsonl --steps 1 --out " + dir + "/bad"),
      {"bad.jsonl:2"});
  // An adapter on another model is refused by its base fingerprint.
  expect_clean_error(test::run_cli("ppl stories260K/stories260K.bin --adapter " + dir + "/qlora -d " + dir +
                                   "/train.txt --seqlen 64"),
                     {"adapter_config.json", "another base model"});
}

}  // namespace
}  // namespace lowbit

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

}  // namespace
}  // namespace lowbit

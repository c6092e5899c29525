// load_checkpoint's dispatch, and robustness: truncated copies of the real files at many cut points must all
// give a one-line lowbit::Error (the asan preset turns any stray read into a failure).
#include <gtest/gtest.h>

#include <filesystem>

#include "../test_util.h"
#include "core/mmap.h"
#include "io/checkpoint.h"
#include "io_test_util.h"

namespace lowbit {
namespace {

using test::throws_error;

TEST(LoadCheckpoint, DispatchesOnWhatThePathIs) {
  EXPECT_EQ(load_checkpoint(test::model_path("testbed-25m")).format, "hf-safetensors");
  EXPECT_EQ(load_checkpoint(test::model_path("stories260K") + "/stories260K.bin").format, "llama2c");
  EXPECT_EQ(load_checkpoint(test::model_path("stories260K") + "/tinyllamas-stories-260k-f32.gguf").format,
            "gguf");
  // GGUF detected by magic whatever the name.
  std::string dir = test::temp_dir("dispatch");
  std::filesystem::copy_file(test::model_path("stories260K") + "/tinyllamas-stories-260k-f32.gguf",
                             dir + "/model.bin");
  EXPECT_EQ(load_checkpoint(dir + "/model.bin").format, "gguf");

  EXPECT_TRUE(throws_error([&] { load_checkpoint(dir + "/nope.bin"); }, {"nope.bin", "cannot open"}));
  EXPECT_TRUE(throws_error([&] { load_checkpoint(dir); }, {dir, "config.json"}));
  test::write_bytes(dir + "/weights.pt", "whatever");
  EXPECT_TRUE(
      throws_error([&] { load_checkpoint(dir + "/weights.pt"); }, {"weights.pt", "unrecognized checkpoint"}));
  test::write_bytes(dir + "/pytorch_model.bin", std::string("PK\x03\x04", 4) + "zip");
  EXPECT_TRUE(
      throws_error([&] { load_checkpoint(dir + "/pytorch_model.bin"); }, {"pytorch_model.bin", "zip"}));
  test::write_bytes(dir + "/x.safetensors", "");
  EXPECT_TRUE(throws_error([&] { load_checkpoint(dir + "/x.safetensors"); }, {"x.safetensors", "config"}));
  test::write_bytes(dir + "/empty.gguf", "");
  EXPECT_TRUE(throws_error([&] { load_checkpoint(dir + "/empty.gguf"); }, {"empty.gguf", "not a GGUF file"}));
}

// Cut points: 100 over the first `dense` bytes (headers live there; the parsers' own tests cut at every byte
// in memory), then 40 spread over the rest.
std::vector<size_t> cut_points(size_t size, size_t dense) {
  std::vector<size_t> cuts;
  for (size_t c = 0; c < std::min(dense, size); c += dense / 100 + 1) cuts.push_back(c);
  for (int i = 1; i < 40; ++i) cuts.push_back(size_t(double(size) * i / 40));
  cuts.push_back(size - 1);
  return cuts;
}

void expect_every_cut_fails(const std::string& src, const std::string& dst, const std::string& load_path,
                            size_t dense) {
  std::string bytes = read_file(src);
  int checked = 0;
  for (size_t cut : cut_points(bytes.size(), dense)) {
    test::write_bytes(dst, bytes.substr(0, cut));
    ASSERT_TRUE(throws_error([&] { load_checkpoint(load_path); }, {dst.substr(dst.rfind('/') + 1)}))
        << src << " cut at " << cut;
    ++checked;
  }
  EXPECT_GT(checked, 100);
  test::write_bytes(dst, bytes);
  EXPECT_NO_THROW(validate_llama_tensors(load_checkpoint(load_path)));
}

TEST(LoadCheckpoint, TruncatedLlama2c) {
  std::string dst = test::temp_dir("cut-l2c") + "/stories.bin";
  expect_every_cut_fails(test::model_path("stories260K") + "/stories260K.bin", dst, dst, 1000);
}

TEST(LoadCheckpoint, TruncatedGguf) {
  std::string dst = test::temp_dir("cut-gguf") + "/stories.gguf";
  expect_every_cut_fails(test::model_path("stories260K") + "/tinyllamas-stories-260k-f32.gguf", dst, dst,
                         12000);
}

TEST(LoadCheckpoint, TruncatedSafetensorsShard) {
  // The testbed directory with its smallest shard truncated (config and other shards intact).
  std::string src = test::model_path("testbed-25m");
  std::string dir = test::temp_dir("cut-hf");
  for (const char* f : {"config.json", "model.safetensors.index.json", "model-00001-of-00003.safetensors",
                        "model-00002-of-00003.safetensors"})
    std::filesystem::copy_file(src + "/" + f, dir + "/" + f);
  expect_every_cut_fails(src + "/model-00003-of-00003.safetensors", dir + "/model-00003-of-00003.safetensors",
                         dir, 1700);
}

}  // namespace
}  // namespace lowbit

#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "../test_util.h"
#include "core/json.h"
#include "core/mmap.h"
#include "core/sha256.h"
#include "io_test_util.h"

namespace lowbit {
namespace {

using test::throws_error;

SafetensorsFile parse(const std::string& bytes, const std::string& name = "t.safetensors") {
  return parse_safetensors_bytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), name);
}

// One valid two-tensor file: a (2, 3) F32 and a (4) BF16, contiguous.
std::string small_file() {
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> b = {0x3f80, 0x4000, 0xc040, 0x0000};
  std::string h =
      R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},"__metadata__":{"format":"pt"}})";
  return test::safetensors_bytes(h, test::bytes_of(a) + test::bytes_of(b));
}

TEST(Safetensors, ParsesSmallFile) {
  std::string bytes = small_file();
  SafetensorsFile f = parse(bytes);
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.metadata.at("format"), "pt");
  const TensorView& a = f.tensors.at("a");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.nbytes, 24u);
  EXPECT_EQ(a.as<float>()[5], 6.0f);
  EXPECT_EQ(a.source, "t.safetensors");
  const TensorView& b = f.tensors.at("b");
  EXPECT_EQ(b.dtype, DType::BF16);
  EXPECT_EQ(bf16_to_f32(b.as<uint16_t>()[2]), -3.0f);
}

TEST(Safetensors, WriterRoundTripAlignedAndContiguous) {
  std::string dir = test::temp_dir("st-write");
  std::vector<float> w(6 * 5);
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(i) * 0.25f - 3;
  std::vector<uint16_t> odd = {1, 2, 3};  // 6 bytes: not a multiple of 8, must go last
  std::vector<int8_t> q = {-8, 7, 0, 1, 2, 3, 4, 5};
  std::vector<float> empty;
  std::map<std::string, TensorView> ts;
  ts["a.odd"] = {DType::F16, {3}, odd.data(), 6, ""};
  ts["b.weight"] = {DType::F32, {6, 5}, w.data(), w.size() * 4, ""};
  ts["c.q"] = {DType::I8, {2, 4}, q.data(), 8, ""};
  ts["d.empty"] = {DType::F32, {0, 7}, empty.data(), 0, ""};
  std::string path = dir + "/m.safetensors";
  write_safetensors(path, ts, {{"quant", "rtn-w4"}});

  SafetensorsFile f = load_safetensors(path);
  EXPECT_EQ(f.metadata.at("quant"), "rtn-w4");
  ASSERT_EQ(f.tensors.size(), 4u);
  for (const auto& [name, t] : ts) {
    const TensorView& g = f.tensors.at(name);
    EXPECT_EQ(g.dtype, t.dtype) << name;
    EXPECT_EQ(g.shape, t.shape) << name;
    ASSERT_EQ(g.nbytes, t.nbytes) << name;
    if (t.nbytes) EXPECT_EQ(std::memcmp(g.data, t.data, t.nbytes), 0) << name;
    size_t off = static_cast<const uint8_t*>(g.data) - f.mapping->data();
    if (t.nbytes % 8 == 0) EXPECT_EQ(off % 8, 0u) << name;
  }
  // The layout the official reader demands: offsets contiguous from 0 to the end of the file, odd-sized last.
  uint64_t hlen;
  std::memcpy(&hlen, f.mapping->data(), 8);
  EXPECT_EQ((8 + hlen) % 8, 0u);
  Json h = parse_json_text(
      std::string_view(reinterpret_cast<const char*>(f.mapping->data()) + 8, size_t(hlen)), "header");
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto& [k, v] : h.items())
    if (k != "__metadata__") ranges.emplace_back(v["data_offsets"][0], v["data_offsets"][1]);
  std::sort(ranges.begin(), ranges.end());
  uint64_t pos = 0;
  for (auto [b, e] : ranges) {
    EXPECT_EQ(b, pos);
    pos = e;
  }
  EXPECT_EQ(8 + hlen + pos, f.mapping->size());
  EXPECT_EQ(h["a.odd"]["data_offsets"][1].get<uint64_t>(), pos);  // last
}

TEST(Safetensors, WriterRejectsSizeMismatch) {
  std::vector<float> w(4);
  std::map<std::string, TensorView> ts;
  ts["w"] = {DType::F32, {2, 3}, w.data(), 16, ""};
  std::string path = test::temp_dir("st-bad") + "/x.safetensors";
  EXPECT_TRUE(throws_error([&] { write_safetensors(path, ts); }, {"x.safetensors", "'w'", "16 bytes"}));
}

TEST(Safetensors, RealShardsMatchIndependentHashes) {
  // sha256 of the tensor bytes, computed by a separate Python reader of the same files.
  std::string dir = test::model_path("testbed-25m");
  struct Case {
    const char *shard, *name;
    std::vector<int64_t> shape;
    const char* sha;
  };
  std::vector<Case> cases = {
      {"model-00001-of-00003.safetensors",
       "model.embed_tokens.weight",
       {32000, 384},
       "23fd2da3ef4a95a0af991ad8baff7545cfd2e0cea13c8f5d37f2f88a439b4784"},
      {"model-00003-of-00003.safetensors",
       "model.layers.7.mlp.down_proj.weight",
       {384, 1024},
       "afda357d34796d33757c02a47a7007d1f29b5ff80e0961a6d6718d0c841c68a6"},
      {"model-00003-of-00003.safetensors",
       "model.norm.weight",
       {384},
       "918d0f1f8af45def2800410a74881c8e3d1664e811e0a3803cab7630caeea899"},
      {"model-00002-of-00003.safetensors",
       "model.layers.0.self_attn.k_proj.weight",
       {128, 384},
       "b2142a6b027b73cb09ff62c196299fe440991968f2c228376475e4a0ed17eb21"},
  };
  for (const auto& c : cases) {
    SafetensorsFile f = load_safetensors(dir + "/" + c.shard);
    const TensorView& t = f.tensors.at(c.name);
    EXPECT_EQ(t.dtype, DType::BF16);
    EXPECT_EQ(t.shape, c.shape);
    EXPECT_EQ(sha256_hex(t.data, t.nbytes), c.sha) << c.name;
  }
  EXPECT_EQ(load_safetensors(dir + "/model-00002-of-00003.safetensors").tensors.size(), 58u);
}

TEST(Safetensors, TruncatedAtEveryCutIsAnError) {
  std::string bytes = small_file();
  for (size_t cut = 0; cut < bytes.size(); ++cut)
    EXPECT_TRUE(throws_error([&] { parse(bytes.substr(0, cut), "cut.safetensors"); }, {"cut.safetensors"}))
        << "cut " << cut;
  EXPECT_TRUE(throws_error([&] { parse("abc", "short.safetensors"); }, {"short.safetensors", "truncated"}));
  EXPECT_TRUE(throws_error([&] { parse(""); }, {"truncated"}));
}

TEST(Safetensors, HeaderLengthPastEnd) {
  std::string s;
  test::put<uint64_t>(s, 1000);
  s += "{}";
  EXPECT_TRUE(
      throws_error([&] { parse(s); }, {"t.safetensors", "header length 1000 exceeds the file size 10"}));
  std::string huge;
  test::put<uint64_t>(huge, ~0ull);
  EXPECT_TRUE(throws_error([&] { parse(huge); }, {"header length"}));
}

TEST(Safetensors, HeaderOver100MB) {
  std::string s;
  uint64_t n = (100ull << 20) + 1;
  test::put<uint64_t>(s, n);
  s.resize(8 + n, ' ');
  EXPECT_TRUE(throws_error([&] { parse(s); }, {"t.safetensors", "100 MB"}));
}

TEST(Safetensors, MalformedHeaders) {
  auto bad = [](const std::string& header, const std::string& data,
                std::initializer_list<std::string> needles) {
    std::string bytes = test::safetensors_bytes(header, data);
    return throws_error([&] { parse(bytes); }, needles);
  };
  std::string d8(8, '\0');
  EXPECT_TRUE(bad("{\"a\": ", d8, {"t.safetensors", "malformed JSON"}));
  EXPECT_TRUE(bad("[1, 2]", d8, {"t.safetensors", "not a JSON object"}));
  // nlohmann reports a number it cannot hold as out_of_range, not parse_error (found by the fuzzer).
  EXPECT_TRUE(bad(R"({"a":{"dtype":"F32","shape":[1e999],"data_offsets":[0,4]}})", d8,
                  {"t.safetensors", "malformed JSON"}));
  EXPECT_TRUE(
      bad(R"({"a":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})", d8, {"unknown dtype 'F8_E4M3'"}));
  EXPECT_TRUE(bad(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8,
                  {"'a'", "hold 8 bytes", "needs 12"}));  // size/dtype mismatch
  EXPECT_TRUE(bad(R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}})", d8, {"needs 4"}));
  EXPECT_TRUE(
      bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", d8, {"past the end of the data"}));
  EXPECT_TRUE(bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", d8, {"begin > end"}));
  EXPECT_TRUE(bad(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                  R"("b":{"dtype":"F16","shape":[2],"data_offsets":[2,6]}})",
                  d8, {"'a'", "'b'", "overlap"}));
  EXPECT_TRUE(
      bad(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8, {"not a non-negative integer"}));
  EXPECT_TRUE(
      bad(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", d8, {"not a non-negative integer"}));
  EXPECT_TRUE(bad(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", d8, {"'shape'"}));
  EXPECT_TRUE(bad(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", d8, {"'dtype'"}));
  EXPECT_TRUE(bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", d8, {"data_offsets"}));
  EXPECT_TRUE(bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,-8]}})", d8, {"data_offsets"}));
  EXPECT_TRUE(bad(R"({"a":[1]})", d8, {"not an object"}));
  // Strings from the file never break the one-line message.
  EXPECT_TRUE(
      bad(R"({"a\nb":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", d8, {"'a\\x0ab'", "control"}));
  EXPECT_TRUE(
      bad(R"({"a":{"dtype":"F\n32","shape":[2],"data_offsets":[0,8]}})", d8, {"unknown dtype 'F\\x0a32'"}));
  EXPECT_TRUE(bad(R"({"__metadata__":{"k":1}})", d8, {"__metadata__", "'k'"}));
  EXPECT_TRUE(bad(R"({"__metadata__":[]})", d8, {"__metadata__"}));
  // Shapes whose element count overflows, with and without a zero dimension.
  EXPECT_TRUE(bad(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", d8,
                  {"overflows"}));
  EXPECT_TRUE(bad(R"({"a":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})", d8,
                  {"overflows"}));
  EXPECT_TRUE(
      bad(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}})", d8, {"overflows"}));
}

TEST(Safetensors, ZeroSizedAndAdjacentTensorsAreFine) {
  std::string h = R"({"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                  R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                  R"("b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})";
  SafetensorsFile f = parse(test::safetensors_bytes(h, std::string(8, '\1')));
  EXPECT_EQ(f.tensors.size(), 3u);
  EXPECT_EQ(f.tensors.at("e").numel(), 0);
}

}  // namespace
}  // namespace lowbit

#include "io/gguf.h"

#include <gtest/gtest.h>

#include <cmath>

#include "../test_util.h"
#include "core/mmap.h"
#include "io_test_util.h"

namespace lowbit {
namespace {

using test::GgufBuilder;
using test::throws_error;

std::string stories_gguf() {
  return test::model_path("stories260K") + "/tinyllamas-stories-260k-f32.gguf";
}

GgufFile parse(const std::string& bytes, const std::string& name = "t.gguf") {
  return GgufFile(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), name);
}

std::string f32_data(size_t n, float scale = 1.0f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = float(i) * scale;
  return test::bytes_of(v);
}

// A one-block llama: n_embd 8, 2 heads of 4, 1 KV head, n_ff 12, vocab 10.
GgufBuilder tiny_llama(uint32_t version, const std::string& arch = "llama", bool with_output = true) {
  GgufBuilder b(version);
  b.kv_string("general.architecture", arch);
  b.kv_u32("llama.embedding_length", 8);
  b.kv_u32("llama.block_count", 1);
  b.kv_u32("llama.feed_forward_length", 12);
  b.kv_u32("llama.attention.head_count", 2);
  b.kv_u32("llama.attention.head_count_kv", 1);
  b.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-6f);
  b.kv_f32("llama.rope.freq_base", 500000.0f);
  b.kv_u32("llama.context_length", 128);
  b.kv_u32("llama.rope.dimension_count", 4);
  b.kv_u32("tokenizer.ggml.bos_token_id", 5);
  b.kv_u32("tokenizer.ggml.eos_token_id", 6);
  b.tensor("token_embd.weight", {8, 10}, 0, f32_data(80));
  b.tensor("blk.0.attn_norm.weight", {8}, 0, f32_data(8));
  b.tensor("blk.0.attn_q.weight", {8, 8}, 0, f32_data(64));
  b.tensor("blk.0.attn_k.weight", {8, 4}, 0, f32_data(32));
  b.tensor("blk.0.attn_v.weight", {8, 4}, 0, f32_data(32));
  b.tensor("blk.0.attn_output.weight", {8, 8}, 0, f32_data(64));
  b.tensor("blk.0.ffn_norm.weight", {8}, 0, f32_data(8));
  b.tensor("blk.0.ffn_gate.weight", {8, 12}, 0, f32_data(96));
  b.tensor("blk.0.ffn_up.weight", {8, 12}, 0, f32_data(96));
  b.tensor("blk.0.ffn_down.weight", {12, 8}, 0, f32_data(96, 0.5f));
  b.tensor("output_norm.weight", {8}, 0, f32_data(8));
  if (with_output) b.tensor("output.weight", {8, 10}, 0, f32_data(80));
  return b;
}

TEST(Gguf, StoriesMetadata) {
  GgufFile f(stories_gguf());
  // Dump for the log: what this v1 file holds.
  for (const auto& [k, v] : f.metadata()) std::printf("  %s = %s\n", k.c_str(), v.summary().c_str());
  EXPECT_EQ(f.version(), 1u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.metadata().size(), 18u);
  ASSERT_EQ(f.tensors().size(), 48u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_string("llama.tensor_data_layout"), "Meta AI original pth");
  EXPECT_EQ(f.get_u32("llama.embedding_length"), 64u);
  EXPECT_EQ(f.get_u32("llama.context_length"), 512u);
  EXPECT_FLOAT_EQ(f.get_f32("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
  std::vector<std::string> tokens = f.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 512u);
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[3], "<0x00>");
  EXPECT_EQ(f.get_f32_array("tokenizer.ggml.scores").size(), 512u);
  std::vector<int32_t> types = f.get_i32_array("tokenizer.ggml.token_type");
  EXPECT_EQ(types[0], 2);  // unknown
  EXPECT_EQ(types[1], 3);  // control
  EXPECT_EQ(types[3], 6);  // byte
  const GgufTensorInfo* t = f.find_tensor("token_embd.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dims, (std::vector<uint64_t>{64, 512}));
  EXPECT_EQ(t->type, 0u);
  EXPECT_EQ(t->file_offset, 11456u);  // 11450 bytes of header, padded to 32
  const GgufTensorInfo& last = f.tensors().back();
  EXPECT_EQ(last.name, "output.weight");
  EXPECT_EQ(last.file_offset + last.nbytes, f.mapping()->size());

  EXPECT_TRUE(throws_error([&] { f.get_string("llama.block_count"); },
                           {stories_gguf(), "'llama.block_count'", "type u32, expected string"}));
  EXPECT_TRUE(throws_error([&] { f.get_u32("llama.nope"); }, {stories_gguf(), "'llama.nope'", "missing"}));
  EXPECT_TRUE(throws_error([&] { f.get_f32_array("tokenizer.ggml.tokens"); }, {"array of string"}));
}

TEST(Gguf, StoriesCheckpoint) {
  Checkpoint c = load_gguf_checkpoint(stories_gguf());
  const ModelConfig& m = c.config;
  EXPECT_EQ(c.format, "gguf");
  EXPECT_EQ(m.n_embd, 64);
  EXPECT_EQ(m.n_layer, 5);
  EXPECT_EQ(m.n_head, 8);
  EXPECT_EQ(m.n_kv_head, 4);
  EXPECT_EQ(m.head_dim, 8);
  EXPECT_EQ(m.n_ff, 172);
  EXPECT_EQ(m.n_vocab, 512);
  EXPECT_EQ(m.max_position_embeddings, 512);
  EXPECT_NEAR(m.norm_eps, 1e-5, 1e-12);
  EXPECT_EQ(m.rope_theta, 10000.0);
  EXPECT_EQ(m.rope_style, RopeStyle::Interleaved);
  EXPECT_FALSE(m.tie_word_embeddings);  // output.weight is stored (a copy of the embedding)
  EXPECT_EQ(m.bos_token_id, 1);
  EXPECT_EQ(m.eos_token_ids, std::vector<int>{2});
  EXPECT_EQ(c.tensors.size(), 48u);
  EXPECT_EQ(c.get("model.embed_tokens.weight").shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(c.get("model.layers.4.self_attn.k_proj.weight").shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(c.get("model.layers.0.mlp.down_proj.weight").shape, (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(c.get("model.layers.0.mlp.gate_proj.weight").shape, (std::vector<int64_t>{172, 64}));
  validate_llama_tensors(c);
}

TEST(Gguf, AllValueTypesAndNestedArrays) {
  for (uint32_t version : {1u, 2u, 3u}) {
    GgufBuilder b(version);
    using B = GgufBuilder;
    b.kv_raw("u8", 0, B::pod<uint8_t>(200));
    b.kv_raw("i8", 1, B::pod<int8_t>(-100));
    b.kv_raw("u16", 2, B::pod<uint16_t>(60000));
    b.kv_raw("i16", 3, B::pod<int16_t>(-30000));
    b.kv_u32("u32", 4000000000u);
    b.kv_i32("i32", -2000000000);
    b.kv_f32("f32", 1.5f);
    b.kv_bool("bool", true);
    b.kv_string("str", "h\xC3\xA9llo");
    b.kv_raw("u64", 10, B::pod<uint64_t>(1ull << 40));
    b.kv_raw("i64", 11, B::pod<int64_t>(-(1ll << 40)));
    b.kv_raw("f64", 12, B::pod<double>(0.1));
    // [[1, 2], [], [3]] as an array of u8 arrays, and an empty string array.
    std::string nested = b.array_header(9, 3);
    nested += b.array_header(0, 2) + "\x01\x02";
    nested += b.array_header(0, 0);
    nested += b.array_header(0, 1) + "\x03";
    b.kv_raw("nested", 9, nested);
    b.kv_strings("strs", {});
    b.kv_i32s("i32s", {-1, 7});
    std::string bytes = b.build();
    GgufFile f = parse(bytes);
    SCOPED_TRACE(version);
    EXPECT_EQ(f.version(), version);
    EXPECT_EQ(f.get_u32("u8"), 200u);
    EXPECT_EQ(f.get_i32("i8"), -100);
    EXPECT_EQ(f.get_u32("u16"), 60000u);
    EXPECT_EQ(f.get_i32("i16"), -30000);
    EXPECT_EQ(f.get_u32("u32"), 4000000000u);
    EXPECT_EQ(f.get_i32("i32"), -2000000000);
    EXPECT_EQ(f.get_f32("f32"), 1.5f);
    EXPECT_TRUE(f.get_bool("bool"));
    EXPECT_EQ(f.get_string("str"), "h\xC3\xA9llo");
    EXPECT_EQ(f.get_u64("u64"), 1ull << 40);
    EXPECT_EQ(int64_t(f.find("i64")->bits), -(1ll << 40));
    EXPECT_EQ(f.get_f32("f64"), 0.1f);
    const GgufValue& n = f.get_array("nested");
    ASSERT_EQ(n.array.size(), 3u);
    EXPECT_EQ(n.elem_type, GgufType::ARRAY);
    EXPECT_EQ(n.array[0].array.size(), 2u);
    EXPECT_EQ(n.array[0].array[1].bits, 2u);
    EXPECT_TRUE(n.array[1].array.empty());
    EXPECT_EQ(n.array[2].array[0].bits, 3u);
    EXPECT_TRUE(f.get_string_array("strs").empty());
    EXPECT_EQ(f.get_i32_array("i32s"), (std::vector<int32_t>{-1, 7}));
    // Range and type errors name the file and the key.
    EXPECT_TRUE(throws_error([&] { f.get_u32("i8"); }, {"t.gguf", "'i8'", "does not fit"}));
    EXPECT_TRUE(throws_error([&] { f.get_i32("u32"); }, {"'u32'", "does not fit"}));
    EXPECT_TRUE(throws_error([&] { f.get_u64("i64"); }, {"'i64'", "negative"}));
    EXPECT_TRUE(throws_error([&] { f.get_bool("u8"); }, {"'u8'", "expected bool"}));
    EXPECT_TRUE(throws_error([&] { f.get_f32("str"); }, {"'str'", "expected f32"}));
    EXPECT_TRUE(throws_error([&] { f.get_array("u8"); }, {"'u8'", "expected array"}));
    EXPECT_TRUE(throws_error([&] { f.get_i32_array("nested"); }, {"'nested'"}));
  }
}

TEST(Gguf, TensorTypesAndDims) {
  GgufBuilder b(3);
  std::vector<uint16_t> h = {f32_to_f16(1.0f),    f32_to_f16(-2.5f), f32_to_f16(0.125f), 0, 0,
                             f32_to_f16(65504.0f)};
  std::vector<uint16_t> bf = {f32_to_bf16(3.0f), f32_to_bf16(-0.5f)};
  b.tensor("half", {3, 2}, 1, test::bytes_of(h));
  b.tensor("bf", {2}, 30, test::bytes_of(bf));
  b.tensor("q4", {32, 2}, 2, std::string(36, '\0'));
  b.tensor("f", {2, 1, 1, 3}, 0, f32_data(6));
  std::string bytes = b.build();
  GgufFile f = parse(bytes);
  TensorView v = f.tensor_view(*f.find_tensor("half"));
  EXPECT_EQ(v.dtype, DType::F16);
  EXPECT_EQ(v.shape, (std::vector<int64_t>{2, 3}));  // GGUF {3, 2} is PyTorch (2, 3)
  EXPECT_EQ(f16_to_f32(v.as<uint16_t>()[1]), -2.5f);
  EXPECT_EQ(f16_to_f32(v.as<uint16_t>()[5]), 65504.0f);
  v = f.tensor_view(*f.find_tensor("bf"));
  EXPECT_EQ(v.dtype, DType::BF16);
  EXPECT_EQ(bf16_to_f32(v.as<uint16_t>()[0]), 3.0f);
  v = f.tensor_view(*f.find_tensor("f"));
  EXPECT_EQ(v.shape, (std::vector<int64_t>{3, 1, 1, 2}));
  EXPECT_EQ(v.as<float>()[5], 5.0f);
  const GgufTensorInfo* q = f.find_tensor("q4");
  EXPECT_EQ(q->nbytes, 36u);  // 2 blocks of 18 bytes
  EXPECT_EQ(ggml_type_name(q->type), "Q4_0");
  EXPECT_TRUE(throws_error([&] { f.tensor_view(*q); }, {"t.gguf", "'q4'", "Q4_0", "only F32, F16 and BF16"}));
}

TEST(Gguf, TinyLlamaCheckpoint) {
  for (uint32_t version : {1u, 2u, 3u}) {
    std::string path = test::temp_dir("gguf") + "/tiny.gguf";
    test::write_bytes(path, tiny_llama(version).build());
    Checkpoint c = load_gguf_checkpoint(path);
    validate_llama_tensors(c);
    EXPECT_EQ(c.config.n_vocab, 10);
    EXPECT_EQ(c.config.head_dim, 4);
    EXPECT_EQ(c.config.norm_eps, double(1e-6f));
    EXPECT_EQ(c.config.rope_theta, 500000.0);
    EXPECT_EQ(c.config.max_position_embeddings, 128);
    EXPECT_EQ(c.config.bos_token_id, 5);
    EXPECT_EQ(c.config.eos_token_ids, std::vector<int>{6});
    EXPECT_FALSE(c.config.tie_word_embeddings);
    const TensorView& d = c.get("model.layers.0.mlp.down_proj.weight");
    EXPECT_EQ(d.shape, (std::vector<int64_t>{8, 12}));
    EXPECT_EQ(d.as<float>()[95], 47.5f);
  }
  std::string path = test::temp_dir("gguf") + "/tied.gguf";
  test::write_bytes(path, tiny_llama(3, "llama", false).build());
  Checkpoint c = load_gguf_checkpoint(path);
  EXPECT_TRUE(c.config.tie_word_embeddings);
  EXPECT_FALSE(c.has("lm_head.weight"));
  validate_llama_tensors(c);
}

TEST(Gguf, CheckpointErrors) {
  std::string dir = test::temp_dir("gguf-bad");
  auto write = [&](const std::string& name, const std::string& bytes) {
    test::write_bytes(dir + "/" + name, bytes);
    return dir + "/" + name;
  };
  std::string p = write("nl.gguf", tiny_llama(3, "lla\nma").build());
  EXPECT_TRUE(throws_error([&] { load_gguf_checkpoint(p); }, {"nl.gguf", "'lla\\x0ama'"}));
  GgufBuilder ctl(3);
  ctl.kv_u32("a\tb", 1);
  p = write("ctl.gguf", ctl.build());
  EXPECT_TRUE(
      throws_error([&] { load_gguf_checkpoint(p); }, {"ctl.gguf", "'a\\x09b'", "control characters"}));
  p = write("falcon.gguf", tiny_llama(3, "falcon").build());
  EXPECT_TRUE(
      throws_error([&] { load_gguf_checkpoint(p); }, {"falcon.gguf", "unknown architecture 'falcon'"}));

  GgufBuilder b = tiny_llama(3);
  b.tensor("blk.3.attn_q.weight", {8, 8}, 0, f32_data(64));
  p = write("blk.gguf", b.build());
  EXPECT_TRUE(throws_error([&] { load_gguf_checkpoint(p); },
                           {"blk.gguf", "blk.3.attn_q.weight", "block_count is 1"}));

  b = tiny_llama(3);
  b.tensor("blk.0.extra.weight", {32}, 8, std::string(34, '\0'));
  p = write("q8.gguf", b.build());
  EXPECT_TRUE(throws_error([&] { load_gguf_checkpoint(p); }, {"q8.gguf", "blk.0.extra.weight", "Q8_0"}));

  GgufBuilder nokey(3);
  nokey.kv_string("general.architecture", "llama");
  p = write("nokey.gguf", nokey.build());
  EXPECT_TRUE(
      throws_error([&] { load_gguf_checkpoint(p); }, {"nokey.gguf", "'llama.embedding_length'", "missing"}));

  b = tiny_llama(3);
  b.kv_u32("llama.attention.key_length", 6);
  p = write("rot.gguf", b.build());
  EXPECT_TRUE(throws_error([&] { load_gguf_checkpoint(p); }, {"rot.gguf", "dimension_count"}));

  b = tiny_llama(3);
  b.tensor("rope_freqs.weight", {2}, 0, f32_data(2));
  p = write("freqs.gguf", b.build());
  EXPECT_TRUE(throws_error([&] { load_gguf_checkpoint(p); }, {"freqs.gguf", "RoPE scaling"}));

  b = tiny_llama(3);
  b.kv_u32("llama.feed_forward_length", 16);
  p = write("dup.gguf", b.build());
  EXPECT_TRUE(throws_error([&] { load_gguf_checkpoint(p); }, {"dup.gguf", "duplicate metadata key"}));
}

// A shape that disagrees with the metadata is caught by validate_llama_tensors, naming the file.
TEST(Gguf, ShapeMismatchNamesFile) {
  GgufBuilder b(3);
  b.kv_string("general.architecture", "llama");
  b.kv_u32("llama.embedding_length", 8);
  b.kv_u32("llama.block_count", 1);
  b.kv_u32("llama.feed_forward_length", 16);  // tensors below have 12
  b.kv_u32("llama.attention.head_count", 2);
  b.kv_u32("llama.attention.head_count_kv", 1);
  b.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-6f);
  b.tensor("token_embd.weight", {8, 10}, 0, f32_data(80));
  b.tensor("blk.0.attn_norm.weight", {8}, 0, f32_data(8));
  b.tensor("blk.0.attn_q.weight", {8, 8}, 0, f32_data(64));
  b.tensor("blk.0.attn_k.weight", {8, 4}, 0, f32_data(32));
  b.tensor("blk.0.attn_v.weight", {8, 4}, 0, f32_data(32));
  b.tensor("blk.0.attn_output.weight", {8, 8}, 0, f32_data(64));
  b.tensor("blk.0.ffn_norm.weight", {8}, 0, f32_data(8));
  b.tensor("blk.0.ffn_gate.weight", {8, 12}, 0, f32_data(96));
  std::string path = test::temp_dir("gguf-shape") + "/shape.gguf";
  test::write_bytes(path, b.build());
  Checkpoint c = load_gguf_checkpoint(path);
  EXPECT_TRUE(
      throws_error([&] { validate_llama_tensors(c); },
                   {"shape.gguf", "model.layers.0.mlp.gate_proj.weight", "(12, 8)", "expects (16, 8)"}));
}

TEST(Gguf, MalformedFiles) {
  auto bad = [](const std::string& bytes, std::initializer_list<std::string> needles) {
    return throws_error([&] { parse(bytes, "bad.gguf"); }, needles);
  };
  std::string good = tiny_llama(3).build();
  EXPECT_TRUE(bad("GGUX" + good.substr(4), {"bad.gguf", "not a GGUF file"}));
  EXPECT_TRUE(bad("", {"bad.gguf", "not a GGUF file"}));
  for (uint32_t v : {0u, 4u, 0x03000000u}) {
    std::string s = good;
    std::memcpy(&s[4], &v, 4);
    EXPECT_TRUE(bad(s, {"bad.gguf", "unsupported GGUF version"})) << v;
  }
  // Counts that cannot fit in the file.
  std::string s = good;
  uint64_t big = 1ull << 60;
  std::memcpy(&s[8], &big, 8);
  EXPECT_TRUE(bad(s, {"bad.gguf", "cannot fit"}));
  s = good;
  std::memcpy(&s[16], &big, 8);
  EXPECT_TRUE(bad(s, {"bad.gguf", "cannot fit"}));

  using B = GgufBuilder;
  B b(3);
  b.kv_raw("k", 13, "");
  EXPECT_TRUE(bad(b.build(), {"'k'", "invalid value type 13"}));
  b = B(3);
  b.kv_raw("arr", 9, b.array_header(4, 1ull << 40));
  EXPECT_TRUE(bad(b.build(), {"'arr'", "cannot fit"}));
  b = B(3);
  std::string deep;
  for (int i = 0; i < 9; ++i) deep += b.array_header(9, 1);
  deep += b.array_header(0, 0);
  b.kv_raw("deep", 9, deep);
  EXPECT_TRUE(bad(b.build(), {"'deep'", "nested deeper"}));
  b = B(3);
  b.kv_raw("str", 8, GgufBuilder::pod<uint64_t>(1000) + "ab");
  EXPECT_TRUE(bad(b.build(), {"truncated"}));
  b = B(3);
  b.kv_u32("general.alignment", 24);
  EXPECT_TRUE(bad(b.build(), {"general.alignment", "power of two"}));
  b = B(3);
  b.kv_string("general.alignment", "32");
  EXPECT_TRUE(bad(b.build(), {"general.alignment", "expected u32"}));
  b = B(3);
  b.tensor("t", {1, 1, 1, 1, 1}, 0, f32_data(1));
  EXPECT_TRUE(bad(b.build(), {"'t'", "5 dimensions"}));
  b = B(3);
  b.tensor("t", {4}, 99, f32_data(1));
  EXPECT_TRUE(bad(b.build(), {"'t'", "unknown ggml type 99"}));
  b = B(3);
  b.tensor("t", {30}, 2, std::string(18, '\0'));
  EXPECT_TRUE(bad(b.build(), {"'t'", "block size 32"}));
  b = B(3);
  b.tensor("t", {4}, 0, f32_data(4));
  b.tensor("t", {4}, 0, f32_data(4));
  EXPECT_TRUE(bad(b.build(), {"duplicate tensor 't'"}));
  b = B(3);
  b.tensor("t", {1ull << 62, 8}, 0, "");
  EXPECT_TRUE(bad(b.build(), {"'t'", "overflows"}));
  b = B(3);
  b.tensor("t", {1ull << 40}, 0, "");
  EXPECT_TRUE(bad(b.build(), {"'t'", "past the end"}));
  // Offset not a multiple of the alignment: patch the u64 offset of the second tensor.
  b = B(3);
  b.tensor("a", {8}, 0, f32_data(8));
  b.tensor("b", {8}, 0, f32_data(8));
  s = b.build();
  size_t pos =
      s.find(std::string("\x01\x00\x00\x00\x00\x00\x00\x00"
                         "b",
                         9));  // name length 1, "b"
  ASSERT_NE(pos, std::string::npos);
  uint64_t off = 40;
  std::memcpy(&s[pos + 9 + 4 + 8 + 4], &off, 8);
  EXPECT_TRUE(bad(s, {"'b'", "not a multiple of the alignment"}));
}

TEST(Gguf, EveryPrefixOfSyntheticFileIsAnError) {
  for (uint32_t version : {1u, 3u}) {
    std::string bytes = tiny_llama(version).build();
    ASSERT_NO_THROW(parse(bytes));
    for (size_t cut = 0; cut < bytes.size(); ++cut)
      ASSERT_TRUE(throws_error([&] { parse(bytes.substr(0, cut), "cut.gguf"); }, {"cut.gguf"}))
          << "version " << version << " cut " << cut;
  }
}

TEST(Gguf, EveryPrefixOfRealHeaderIsAnError) {
  std::string bytes = read_file(stories_gguf());
  for (size_t cut = 0; cut < 12000; ++cut) {
    std::string prefix = bytes.substr(0, cut);  // own heap buffer, so ASan sees reads past `cut`
    ASSERT_TRUE(throws_error([&] { parse(prefix, "cut.gguf"); }, {"cut.gguf"})) << "cut " << cut;
  }
}

}  // namespace
}  // namespace lowbit

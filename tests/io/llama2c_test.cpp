#include "io/llama2c.h"

#include <gtest/gtest.h>

#include <cstring>

#include "../test_util.h"
#include "core/sha256.h"
#include "io/gguf.h"
#include "io_test_util.h"

namespace lowbit {
namespace {

using test::throws_error;

std::string stories_bin() {
  return test::model_path("stories260K") + "/stories260K.bin";
}

// A llama2.c file for the header h; float k of the body holds k.
std::string llama2c_file(std::vector<int32_t> h, size_t n_floats) {
  std::string s;
  for (int32_t v : h) test::put(s, v);
  for (size_t k = 0; k < n_floats; ++k) test::put(s, float(k));
  return s;
}

TEST(Llama2c, Stories260K) {
  Checkpoint c = load_llama2c_checkpoint(stories_bin());
  const ModelConfig& m = c.config;
  EXPECT_EQ(c.format, "llama2c");
  EXPECT_EQ(m.n_embd, 64);
  EXPECT_EQ(m.n_ff, 172);
  EXPECT_EQ(m.n_layer, 5);
  EXPECT_EQ(m.n_head, 8);
  EXPECT_EQ(m.n_kv_head, 4);
  EXPECT_EQ(m.head_dim, 8);
  EXPECT_EQ(m.n_vocab, 512);
  EXPECT_EQ(m.max_position_embeddings, 512);
  EXPECT_EQ(m.norm_eps, 1e-5);
  EXPECT_EQ(m.rope_theta, 10000.0);
  EXPECT_EQ(m.rope_style, RopeStyle::Interleaved);
  EXPECT_TRUE(m.tie_word_embeddings);
  EXPECT_EQ(m.bos_token_id, 1);
  EXPECT_EQ(m.eos_token_ids, std::vector<int>{2});
  EXPECT_EQ(c.tensors.size(), 1u + 5 * 9 + 1);
  validate_llama_tensors(c);
  // sha256 of the raw bytes at the offsets llama2.c's run.c computes, from a separate Python reader.
  const TensorView& wq = c.get("model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(sha256_hex(wq.data, wq.nbytes),
            "42ae9485806ab6265d45a011cc0e4e8bde4ec68705d9f5dab306c00498bcb1a3");
  const TensorView& e = c.get("model.embed_tokens.weight");
  EXPECT_EQ(sha256_hex(e.data, e.nbytes), "452158377d2f8703b5b38935f894b628d3c7e2ac26bc167bfbfc68655dfe2c8a");
}

// Both readers of the same weights must agree bit for bit. This also settles the RoPE layout question: the
// GGUF (llama.tensor_data_layout "Meta AI original pth") stores q/k rows exactly as llama2.c does,
// unpermuted, so both use RopeStyle::Interleaved.
TEST(Llama2c, BitIdenticalToGguf) {
  Checkpoint a = load_llama2c_checkpoint(stories_bin());
  Checkpoint g = load_gguf_checkpoint(test::model_path("stories260K") + "/tinyllamas-stories-260k-f32.gguf");
  EXPECT_EQ(a.config.rope_style, g.config.rope_style);
  for (const auto& [name, t] : a.tensors) {
    ASSERT_TRUE(g.has(name)) << name;
    const TensorView& u = g.get(name);
    EXPECT_EQ(u.dtype, DType::F32) << name;
    ASSERT_EQ(u.shape, t.shape) << name;
    ASSERT_EQ(u.nbytes, t.nbytes) << name;
    EXPECT_EQ(std::memcmp(u.data, t.data, t.nbytes), 0) << name;
  }
  // The GGUF stores the shared classifier as its own output.weight: equal to the embedding.
  const TensorView& head = g.get("lm_head.weight");
  const TensorView& emb = a.get("model.embed_tokens.weight");
  ASSERT_EQ(head.shape, emb.shape);
  EXPECT_EQ(std::memcmp(head.data, emb.data, emb.nbytes), 0);
  EXPECT_EQ(g.tensors.size(), a.tensors.size() + 1);
}

TEST(Llama2c, UnsharedClassifierAndLayout) {
  // dim 4, hidden 6, 2 layers, 2 heads, 1 kv head, vocab -3 (unshared), seq_len 2; head 2, kv_dim 2.
  const size_t n =
      3 * 4 + 2 * 4 + 2 * 16 + 2 * 8 + 2 * 8 + 2 * 16 + 2 * 4 + 3 * 2 * 24 + 4 + 2 * 2 * 1 + 3 * 4;
  std::string path = test::temp_dir("l2c") + "/tiny.bin";
  test::write_bytes(path, llama2c_file({4, 6, 2, 2, 1, -3, 2}, n));
  Checkpoint c = load_llama2c_checkpoint(path);
  EXPECT_FALSE(c.config.tie_word_embeddings);
  EXPECT_EQ(c.config.n_vocab, 3);
  validate_llama_tensors(c);
  // First float of each tensor = its offset in floats, following the order in the header comment.
  auto first = [&](const std::string& name) { return c.get(name).as<float>()[0]; };
  EXPECT_EQ(first("model.embed_tokens.weight"), 0);
  EXPECT_EQ(first("model.layers.0.input_layernorm.weight"), 12);
  EXPECT_EQ(first("model.layers.1.input_layernorm.weight"), 16);
  EXPECT_EQ(first("model.layers.0.self_attn.q_proj.weight"), 20);
  EXPECT_EQ(first("model.layers.1.self_attn.q_proj.weight"), 36);
  EXPECT_EQ(first("model.layers.0.self_attn.k_proj.weight"), 52);
  EXPECT_EQ(first("model.layers.0.self_attn.v_proj.weight"), 68);
  EXPECT_EQ(first("model.layers.0.self_attn.o_proj.weight"), 84);
  EXPECT_EQ(first("model.layers.0.post_attention_layernorm.weight"), 116);
  EXPECT_EQ(first("model.layers.0.mlp.gate_proj.weight"), 124);  // w1
  EXPECT_EQ(first("model.layers.0.mlp.down_proj.weight"), 172);  // w2
  EXPECT_EQ(first("model.layers.1.mlp.down_proj.weight"), 196);
  EXPECT_EQ(first("model.layers.0.mlp.up_proj.weight"), 220);  // w3
  EXPECT_EQ(first("model.norm.weight"), 268);
  EXPECT_EQ(first("lm_head.weight"), 268 + 4 + 4);  // after rms_final and 2 x (2 x 1) freq_cis
  EXPECT_EQ(c.get("model.layers.0.mlp.down_proj.weight").shape, (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(c.get("model.layers.0.self_attn.k_proj.weight").shape, (std::vector<int64_t>{2, 4}));
}

TEST(Llama2c, BadFiles) {
  std::string dir = test::temp_dir("l2c-bad");
  auto bad = [&](const std::string& bytes, std::initializer_list<std::string> needles) {
    std::string p = dir + "/bad.bin";
    test::write_bytes(p, bytes);
    return throws_error([&] { load_llama2c_checkpoint(p); }, needles);
  };
  EXPECT_TRUE(bad("", {"bad.bin", "truncated"}));
  EXPECT_TRUE(bad(llama2c_file({4, 6, 2, 2, 1, -3}, 0), {"bad.bin", "truncated"}));
  EXPECT_TRUE(bad(llama2c_file({0, 6, 2, 2, 1, 3, 2}, 0), {"bad.bin", "dim = 0"}));
  EXPECT_TRUE(bad(llama2c_file({4, -6, 2, 2, 1, 3, 2}, 0), {"hidden_dim = -6"}));
  EXPECT_TRUE(bad(llama2c_file({4, 6, 2, 3, 1, 3, 2}, 0), {"not divisible by n_heads 3"}));
  EXPECT_TRUE(bad(llama2c_file({4, 6, 2, 2, 3, 3, 2}, 0), {"n_kv_heads 3"}));
  EXPECT_TRUE(bad(llama2c_file({6, 6, 2, 2, 2, 3, 2}, 0), {"head size 3"}));
  EXPECT_TRUE(bad(llama2c_file({4, 6, 2, 2, 1, int32_t(0x80000000), 2}, 0), {"vocab_size"}));
  EXPECT_TRUE(bad(llama2c_file({1 << 30, 1 << 30, 1 << 30, 2, 1, 1 << 30, 2}, 0), {"bad.bin"}));
  EXPECT_TRUE(bad(llama2c_file({4, 6, 2, 2, 1, 3, 2}, 10), {"bad.bin", "implies"}));
  std::string magic = "24ka" + std::string(100, '\0');
  EXPECT_TRUE(bad(magic, {"versioned export"}));
}

TEST(Llama2c, TruncatedRealFile) {
  std::string bytes = read_file(stories_bin());
  std::string p = test::temp_dir("l2c-cut") + "/cut.bin";
  for (size_t cut : {size_t(0), size_t(3), size_t(27), size_t(28), size_t(1000), bytes.size() / 2,
                     bytes.size() - 4, bytes.size() - 1}) {
    test::write_bytes(p, bytes.substr(0, cut));
    EXPECT_TRUE(throws_error([&] { load_llama2c_checkpoint(p); }, {"cut.bin"})) << cut;
  }
  test::write_bytes(p, bytes + "x");
  EXPECT_TRUE(
      throws_error([&] { load_llama2c_checkpoint(p); }, {"cut.bin", "1056541 bytes", "implies 1056540"}));
}

}  // namespace
}  // namespace lowbit

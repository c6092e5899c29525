// Synthetic inputs for the quantization tests: a small random LLaMA built in memory (no files), a byte-level
// tokenizer, and random matrices.
#pragma once
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/tokenizer.h"
#include "model/llama.h"

namespace lowbit::test {

struct SynthSpec {
  int n_embd = 64, n_layer = 2, n_head = 4, n_kv_head = 2, head_dim = 16, n_ff = 128, n_vocab = 64;
  uint32_t seed = 1;
  // Channels of the RMSNorm weights multiplied by `outlier_gain` (activation outliers, as in real LLMs).
  std::vector<int> outlier_channels;
  float outlier_gain = 1;
};

// Weights ~ N(0, 1/sqrt(fan_in)), norms ~ 1 + small noise; all f32.
inline std::unique_ptr<LlamaModel> make_synth_model(const SynthSpec& s) {
  Checkpoint ck;
  ck.path = "synthetic";
  ck.format = "hf-safetensors";
  ModelConfig& c = ck.config;
  c.n_embd = s.n_embd, c.n_layer = s.n_layer, c.n_head = s.n_head, c.n_kv_head = s.n_kv_head;
  c.head_dim = s.head_dim, c.n_ff = s.n_ff, c.n_vocab = s.n_vocab;
  c.max_position_embeddings = 4096;
  c.bos_token_id = 1;
  std::mt19937 rng(s.seed);
  std::normal_distribution<float> nd(0, 1);
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float sd, float mean = 0) {
    auto buf = std::make_shared<std::vector<float>>();
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    buf->resize(size_t(n));
    for (float& v : *buf) v = mean + sd * nd(rng);
    TensorView t;
    t.dtype = DType::F32;
    t.shape = shape;
    t.data = buf->data();
    t.nbytes = size_t(n) * 4;
    t.source = "synthetic";
    ck.tensors[name] = t;
    ck.owners.push_back(buf);
    return buf;
  };
  const int64_t E = s.n_embd, F = s.n_ff, Q = int64_t(s.n_head) * s.head_dim,
                K = int64_t(s.n_kv_head) * s.head_dim;
  add("model.embed_tokens.weight", {s.n_vocab, E}, 1.0f);
  for (int i = 0; i < s.n_layer; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    for (const char* ln : {"input_layernorm.weight", "post_attention_layernorm.weight"}) {
      auto w = add(p + ln, {E}, 0.1f, 1.0f);
      for (int ch : s.outlier_channels) (*w)[size_t(ch)] *= s.outlier_gain;
    }
    add(p + "self_attn.q_proj.weight", {Q, E}, 1 / std::sqrt(float(E)));
    add(p + "self_attn.k_proj.weight", {K, E}, 1 / std::sqrt(float(E)));
    add(p + "self_attn.v_proj.weight", {K, E}, 1 / std::sqrt(float(E)));
    add(p + "self_attn.o_proj.weight", {E, Q}, 1 / std::sqrt(float(Q)));
    add(p + "mlp.gate_proj.weight", {F, E}, 1 / std::sqrt(float(E)));
    add(p + "mlp.up_proj.weight", {F, E}, 1 / std::sqrt(float(E)));
    add(p + "mlp.down_proj.weight", {E, F}, 1 / std::sqrt(float(F)));
  }
  add("model.norm.weight", {E}, 0.1f, 1.0f);
  add("lm_head.weight", {s.n_vocab, E}, 1 / std::sqrt(float(E)));
  return std::make_unique<LlamaModel>(std::move(ck));
}

// One id per byte: id = 2 + byte % (vocab − 2); BOS = 1.
class ByteTokenizer : public Tokenizer {
 public:
  explicit ByteTokenizer(int vocab) : vocab_(vocab) { bos_id = 1; }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    for (unsigned char ch : text) ids.push_back(2 + int32_t(ch) % (vocab_ - 2));
    return ids;
  }
  std::string decode(std::span<const int32_t> ids) const override { return std::string(ids.size(), '?'); }
  int32_t vocab_size() const override { return vocab_; }

 private:
  int vocab_;
};

inline std::vector<float> randn(size_t n, uint32_t seed, float sd = 1) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, sd);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

// Random text of printable words, deterministic.
inline std::string random_text(size_t bytes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s;
  while (s.size() < bytes) {
    const int len = 1 + int(rng() % 8);
    for (int i = 0; i < len; ++i) s += char('a' + rng() % 26);
    s += ' ';
  }
  s.resize(bytes);
  return s;
}

}  // namespace lowbit::test

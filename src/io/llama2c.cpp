#include "io/llama2c.h"

#include <fmt/format.h>

#include <cstring>

#include "core/error.h"
#include "core/mmap.h"
#include "io/byte_reader.h"

namespace lowbit {

Checkpoint load_llama2c_checkpoint(const std::string& path) {
  auto file = std::make_shared<const MappedFile>(path);
  ByteReader r(file->data(), file->size(), path);
  // export.py's versioned formats start with the magic 0x616b3432 ("ak42"); only the legacy one is read here.
  if (file->size() >= 4 && std::memcmp(file->data(), "24ka", 4) == 0)
    fail("{}: llama2.c versioned export format is not supported (re-export with --version 0)", path);
  int32_t h[7];
  static const char* kNames[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  for (int i = 0; i < 7; ++i) h[i] = r.read<int32_t>("llama2.c header");
  for (int i = 0; i < 7; ++i)
    if (h[i] == 0 || (h[i] < 0 && i != 5) || h[i] == std::numeric_limits<int32_t>::min())
      fail("{}: bad llama2.c header: {} = {}", path, kNames[i], h[i]);
  const int64_t dim = h[0], hidden = h[1], L = h[2], n_heads = h[3], n_kv = h[4], seq_len = h[6];
  const bool shared = h[5] > 0;
  const int64_t vocab = shared ? h[5] : -int64_t(h[5]);
  if (dim % n_heads != 0) fail("{}: bad llama2.c header: dim {} is not divisible by n_heads {}", path, dim, n_heads);
  if (n_kv > n_heads || n_heads % n_kv != 0)
    fail("{}: bad llama2.c header: n_heads {} is not a multiple of n_kv_heads {}", path, n_heads, n_kv);
  const int64_t head = dim / n_heads, kv_dim = head * n_kv;
  if (head % 2 != 0) fail("{}: bad llama2.c header: head size {} must be even", path, head);

  struct Part {
    const char* name;
    std::vector<int64_t> shape;  // per layer when layered
    bool layered;
  };
  const std::vector<Part> parts = {
      {"model.embed_tokens.weight", {vocab, dim}, false},
      {"input_layernorm.weight", {dim}, true},
      {"self_attn.q_proj.weight", {dim, dim}, true},
      {"self_attn.k_proj.weight", {kv_dim, dim}, true},
      {"self_attn.v_proj.weight", {kv_dim, dim}, true},
      {"self_attn.o_proj.weight", {dim, dim}, true},
      {"post_attention_layernorm.weight", {dim}, true},
      {"mlp.gate_proj.weight", {hidden, dim}, true},  // w1
      {"mlp.down_proj.weight", {dim, hidden}, true},  // w2
      {"mlp.up_proj.weight", {hidden, dim}, true},    // w3
      {"model.norm.weight", {dim}, false},
      {"", {seq_len, head / 2}, false},  // freq_cis_real: RoPE tables the forward recomputes
      {"", {seq_len, head / 2}, false},  // freq_cis_imag
      {"lm_head.weight", {vocab, dim}, false},
  };
  // Expected file size, in checked arithmetic: three header factors of up to 2^31 can overflow 64 bits.
  auto skip = [&](const Part& part) { return part.name == std::string("lm_head.weight") && shared; };
  uint64_t floats = 0;
  for (const Part& part : parts) {
    if (skip(part)) continue;
    uint64_t n = part.layered ? uint64_t(L) : 1;
    for (int64_t d : part.shape)
      if (!mul_ok(n, uint64_t(d), &n)) fail("{}: bad llama2.c header: tensor sizes overflow", path);
    if (!add_ok(floats, n, &floats)) fail("{}: bad llama2.c header: tensor sizes overflow", path);
  }
  uint64_t expected;
  if (!mul_ok(floats, 4, &expected) || !add_ok(expected, 28, &expected))
    fail("{}: bad llama2.c header: tensor sizes overflow", path);
  if (expected != file->size())
    fail("{}: file is {} bytes, but the llama2.c header (dim {}, hidden_dim {}, n_layers {}, n_heads {}, "
         "n_kv_heads {}, vocab_size {}, seq_len {}) implies {} bytes",
         path, file->size(), h[0], h[1], h[2], h[3], h[4], h[5], h[6], expected);

  Checkpoint c;
  c.path = path;
  c.format = "llama2c";
  ModelConfig& m = c.config;
  m.n_embd = int(dim);
  m.n_ff = int(hidden);
  m.n_layer = int(L);
  m.n_head = int(n_heads);
  m.n_kv_head = int(n_kv);
  m.head_dim = int(head);
  m.n_vocab = int(vocab);
  m.max_position_embeddings = int(seq_len);
  m.norm_eps = 1e-5;
  m.rope_theta = 10000;
  m.rope_style = RopeStyle::Interleaved;
  m.tie_word_embeddings = shared;
  m.bos_token_id = 1;
  m.eos_token_ids = {2};

  const uint8_t* p = file->data() + 28;  // every offset below is within `expected` bytes, checked above
  for (const Part& part : parts) {
    if (skip(part)) continue;
    size_t n = 1;
    for (int64_t d : part.shape) n *= size_t(d);
    auto view = [&](const uint8_t* at) {
      TensorView v;
      v.dtype = DType::F32;
      v.shape = part.shape;
      v.data = at;
      v.nbytes = n * 4;
      v.source = path;
      return v;
    };
    if (part.layered) {
      for (int64_t l = 0; l < L; ++l, p += n * 4) c.tensors[fmt::format("model.layers.{}.{}", l, part.name)] = view(p);
    } else {
      if (*part.name) c.tensors[part.name] = view(p);
      p += n * 4;
    }
  }
  LOWBIT_ASSERT(p == file->data() + file->size());
  c.owners.push_back(file);
  return c;
}

}  // namespace lowbit

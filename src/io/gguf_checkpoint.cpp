// GGUF (llama architecture) -> Checkpoint with canonical HF tensor names.
#include <fmt/format.h>

#include <cctype>
#include <limits>
#include <memory>

#include "core/error.h"
#include "io/gguf.h"

namespace lowbit {

namespace {

// llama.cpp's per-block tensor names (gguf-py constants.py, MODEL_TENSOR LLM_ARCH_LLAMA) -> HF names.
constexpr std::pair<std::string_view, std::string_view> kBlockNames[] = {
    {"attn_norm.weight", "input_layernorm.weight"},  {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},     {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
};

// The canonical name of a GGUF tensor, or the GGUF name itself for tensors outside the table.
std::string canonical_name(const GgufFile& f, const std::string& name, int n_layer) {
  if (name == "token_embd.weight") return "model.embed_tokens.weight";
  if (name == "output_norm.weight") return "model.norm.weight";
  if (name == "output.weight") return "lm_head.weight";
  if (name.rfind("blk.", 0) != 0) return name;
  size_t i = 4, layer = 0;
  while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])) && i < 12)
    layer = layer * 10 + size_t(name[i++] - '0');
  if (i == 4 || i >= name.size() || name[i] != '.') return name;
  std::string_view rest = std::string_view(name).substr(i + 1);
  for (auto [g, hf] : kBlockNames)
    if (rest == g) {
      if (layer >= size_t(n_layer))
        fail("{}: tensor '{}' belongs to block {}, but llama.block_count is {}", f.name(), name, layer, n_layer);
      return fmt::format("model.layers.{}.{}", layer, hf);
    }
  return name;
}

int positive(const GgufFile& f, const std::string& key, uint32_t v) {
  if (v == 0 || v > uint32_t(std::numeric_limits<int>::max()))
    fail("{}: metadata key '{}' must be a positive int, got {}", f.name(), key, v);
  return int(v);
}

}  // namespace

Checkpoint load_gguf_checkpoint(const std::string& path) {
  auto f = std::make_shared<const GgufFile>(path);
  const std::string& arch = f->get_string("general.architecture");
  if (arch != "llama") fail("{}: unknown architecture '{}' (only llama is supported)", path, arch);

  Checkpoint c;
  c.path = path;
  c.format = "gguf";
  ModelConfig& m = c.config;
  auto u32 = [&](const char* key) { return positive(*f, key, f->get_u32(key)); };
  m.architecture = "llama";
  m.n_embd = u32("llama.embedding_length");
  m.n_layer = u32("llama.block_count");
  m.n_ff = u32("llama.feed_forward_length");
  m.n_head = u32("llama.attention.head_count");
  m.n_kv_head = f->has("llama.attention.head_count_kv") ? u32("llama.attention.head_count_kv") : m.n_head;
  if (f->has("llama.attention.key_length")) {
    m.head_dim = u32("llama.attention.key_length");
  } else {
    if (m.n_embd % m.n_head != 0)
      fail("{}: llama.embedding_length {} is not divisible by llama.attention.head_count {}", path, m.n_embd,
           m.n_head);
    m.head_dim = m.n_embd / m.n_head;
  }
  if (m.n_head % m.n_kv_head != 0)
    fail("{}: llama.attention.head_count {} is not divisible by llama.attention.head_count_kv {}", path, m.n_head,
         m.n_kv_head);
  if (m.head_dim % 2 != 0) fail("{}: head dimension {} must be even for RoPE", path, m.head_dim);
  if (f->has("llama.rope.dimension_count") && int64_t(f->get_u32("llama.rope.dimension_count")) != m.head_dim)
    fail("{}: llama.rope.dimension_count {} differs from the head dimension {} (partial RoPE is not supported)",
         path, f->get_u32("llama.rope.dimension_count"), m.head_dim);
  m.norm_eps = f->get_f32("llama.attention.layer_norm_rms_epsilon");
  if (!(m.norm_eps > 0)) fail("{}: llama.attention.layer_norm_rms_epsilon must be positive", path);
  m.rope_theta = f->has("llama.rope.freq_base") ? f->get_f32("llama.rope.freq_base") : 10000.0;
  if (!(m.rope_theta > 0)) fail("{}: llama.rope.freq_base must be positive", path);
  if (f->has("llama.context_length")) m.max_position_embeddings = u32("llama.context_length");
  // LLaMA-3.1 GGUFs carry their RoPE scaling as precomputed factors in rope_freqs.weight, which the forward
  // does not apply: refuse rather than run a silently different model.
  if (f->find_tensor("rope_freqs.weight") ||
      (f->has("llama.rope.scaling.type") && f->get_string("llama.rope.scaling.type") != "none"))
    fail("{}: RoPE scaling in GGUF files is not supported", path);
  m.rope_style = RopeStyle::Interleaved;
  auto token_id = [&](const char* key, int def) {
    if (!f->has(key)) return def;
    uint32_t id = f->get_u32(key);
    if (id > uint32_t(std::numeric_limits<int>::max())) fail("{}: metadata key '{}' value {} is too large", path, key, id);
    return int(id);
  };
  m.bos_token_id = token_id("tokenizer.ggml.bos_token_id", 1);
  m.eos_token_ids = {token_id("tokenizer.ggml.eos_token_id", 2)};

  for (const GgufTensorInfo& t : f->tensors()) {
    std::string name = canonical_name(*f, t.name, m.n_layer);
    if (!c.tensors.emplace(name, f->tensor_view(t)).second)
      fail("{}: tensor '{}' maps to '{}', which another tensor already has", path, t.name, name);
  }
  // Vocabulary size: the embedding's rows, else the tokenizer's token count.
  if (c.has("model.embed_tokens.weight") && c.get("model.embed_tokens.weight").shape.size() == 2) {
    int64_t rows = c.get("model.embed_tokens.weight").shape[0];
    if (rows <= 0 || rows > std::numeric_limits<int>::max()) fail("{}: token_embd.weight has {} rows", path, rows);
    m.n_vocab = int(rows);
  } else if (f->has("tokenizer.ggml.tokens")) {
    m.n_vocab = int(f->get_array("tokenizer.ggml.tokens").array.size());
  } else {
    fail("{}: cannot tell the vocabulary size (no 2-D token_embd.weight, no tokenizer.ggml.tokens)", path);
  }
  m.tie_word_embeddings = !c.has("lm_head.weight");
  c.owners.push_back(f);  // keeps the mapping alive (GgufFile holds it)
  return c;
}

}  // namespace lowbit

#include "io/checkpoint.h"

#include <fmt/format.h>

#include <cstring>

#include "core/error.h"
#include "core/mmap.h"
#include "core/paths.h"
#include "io/gguf.h"
#include "io/hf_checkpoint.h"
#include "io/llama2c.h"
#include "io/packed_tensors.h"

namespace lowbit {

const TensorView& Checkpoint::get(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) fail("{}: missing tensor {}", path, name);
  return it->second;
}

namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The first bytes of a file (fewer when it is shorter); errors name the file.
std::string file_prefix(const std::string& path, size_t n) {
  MappedFile f(path);
  return std::string(reinterpret_cast<const char*>(f.data()), std::min(n, f.size()));
}

}  // namespace

Checkpoint load_checkpoint(const std::string& path) {
  if (is_directory(path)) {
    if (!path_exists(path + "/config.json"))
      fail("{}: not a checkpoint directory (no config.json; expected a Hugging Face LLaMA checkpoint)", path);
    return load_hf_checkpoint(path);
  }
  std::string head = file_prefix(path, 4);
  if (ends_with(path, ".gguf") || head == "GGUF") return load_gguf_checkpoint(path);
  if (head.rfind("PK\x03\x04", 0) == 0)
    fail("{}: PyTorch zip checkpoints are not supported (convert to safetensors)", path);
  if (ends_with(path, ".bin")) return load_llama2c_checkpoint(path);
  if (ends_with(path, ".safetensors"))
    fail("{}: a bare safetensors file has no config: pass its directory (with config.json)", path);
  fail("{}: unrecognized checkpoint (expected a directory with config.json, a .gguf file or a llama2.c .bin)",
       path);
}

void validate_llama_tensors(const Checkpoint& ckpt) {
  const ModelConfig& c = ckpt.config;
  if (c.n_embd <= 0 || c.n_layer <= 0 || c.n_head <= 0 || c.n_kv_head <= 0 || c.head_dim <= 0 ||
      c.n_ff <= 0 || c.n_vocab <= 0)
    fail(
        "{}: config has a non-positive size (n_embd {}, n_layer {}, n_head {}, n_kv_head {}, head_dim {}, "
        "n_ff {}, "
        "n_vocab {})",
        ckpt.path, c.n_embd, c.n_layer, c.n_head, c.n_kv_head, c.head_dim, c.n_ff, c.n_vocab);
  if (c.n_head % c.n_kv_head != 0)
    fail("{}: config: n_head {} is not a multiple of n_kv_head {}", ckpt.path, c.n_head, c.n_kv_head);
  const int64_t E = c.n_embd, F = c.n_ff, V = c.n_vocab, Q = int64_t(c.n_head) * c.head_dim,
                K = int64_t(c.n_kv_head) * c.head_dim;
  auto check = [&](const std::string& name, std::vector<int64_t> want) {
    const TensorView& t = ckpt.get(name);
    const std::string& src = t.source.empty() ? ckpt.path : t.source;
    if (!is_float(t.dtype))
      fail("{}: tensor {} has dtype {}, expected F32, F16 or BF16", src, name, dtype_name(t.dtype));
    if (t.shape != want)
      fail("{}: tensor {} has shape {}, config expects {}", src, name, shape_str(t.shape), shape_str(want));
    LOWBIT_ASSERT(t.nbytes == size_t(t.numel()) * dtype_size(t.dtype));
  };
  // A linear is either dense (P.weight) or packed in a format of the format table (io/packed_tensors.h).
  auto check_linear = [&](const std::string& prefix, int64_t rows, int64_t cols) {
    if (packed_format_of(ckpt, prefix))
      packed_linear_view(ckpt, prefix, rows, cols);
    else
      check(prefix + ".weight", {rows, cols});
  };
  check("model.embed_tokens.weight", {V, E});
  for (int i = 0; i < c.n_layer; ++i) {
    auto n = [&](const char* s) { return fmt::format("model.layers.{}.{}", i, s); };
    check(n("input_layernorm.weight"), {E});
    check_linear(n("self_attn.q_proj"), Q, E);
    check_linear(n("self_attn.k_proj"), K, E);
    check_linear(n("self_attn.v_proj"), K, E);
    check_linear(n("self_attn.o_proj"), E, Q);
    check(n("post_attention_layernorm.weight"), {E});
    check_linear(n("mlp.gate_proj"), F, E);
    check_linear(n("mlp.up_proj"), F, E);
    check_linear(n("mlp.down_proj"), E, F);
  }
  check("model.norm.weight", {E});
  if (!c.tie_word_embeddings || ckpt.has("lm_head.weight")) check("lm_head.weight", {V, E});
}

}  // namespace lowbit

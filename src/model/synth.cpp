#include "model/synth.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include "core/error.h"
#include "core/progress.h"
#include "io/safetensors.h"
#include "model/hf_config_json.h"

namespace lowbit {

namespace {

struct Shape {
  int d, layers, heads, kv_heads, ff, vocab;
  double theta;
  bool tied;
  bool llama3_scaling;
  int ctx;
};

const std::map<std::string, Shape>& shapes() {
  static const std::map<std::string, Shape> s = {
      {"llama3.2-1b", {2048, 16, 32, 8, 8192, 128256, 500000, true, true, 131072}},
      {"llama3.2-3b", {3072, 28, 24, 8, 8192, 128256, 500000, true, true, 131072}},
      {"llama3-8b", {4096, 32, 32, 8, 14336, 128256, 500000, false, false, 8192}},
      {"llama2-7b", {4096, 32, 32, 32, 11008, 32000, 10000, false, false, 4096}},
      {"testbed-25m", {384, 8, 6, 2, 1024, 32000, 500000, true, false, 2048}},
  };
  return s;
}

// config.json of the shape. BOS/EOS are LLaMA-2's ids (1, 2) for every shape, as synth has always written.
ModelConfig shape_config(const Shape& s) {
  ModelConfig c;
  c.n_embd = s.d;
  c.n_layer = s.layers;
  c.n_head = s.heads;
  c.n_kv_head = s.kv_heads;
  c.head_dim = s.d / s.heads;
  c.n_ff = s.ff;
  c.n_vocab = s.vocab;
  c.norm_eps = 1e-5;
  c.rope_theta = s.theta;
  if (s.llama3_scaling) {  // LLaMA-3.1/3.2's config.json values
    c.rope_scaling.type = "llama3";
    c.rope_scaling.factor = 32;
    c.rope_scaling.low_freq_factor = 1;
    c.rope_scaling.high_freq_factor = 4;
    c.rope_scaling.original_max_position_embeddings = 8192;
  }
  c.max_position_embeddings = s.ctx;
  c.tie_word_embeddings = s.tied;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

const char* torch_dtype(DType dt) {
  switch (dt) {
    case DType::BF16:
      return "bfloat16";
    case DType::F16:
      return "float16";
    case DType::F32:
      return "float32";
    default:
      fail("synth: dtype {} is not bf16, f16 or f32", dtype_name(dt));
  }
}

}  // namespace

const std::vector<std::string>& synth_shapes() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& [k, v] : shapes()) n.push_back(k);
    return n;
  }();
  return names;
}

size_t synth_checkpoint(const SynthOptions& o, const std::string& out_dir) {
  auto it = shapes().find(o.shape);
  if (it == shapes().end())
    fail("synth: unknown shape '{}' (known: {})", o.shape, fmt::join(synth_shapes(), ", "));
  Shape s = it->second;
  if (o.layers > 0) s.layers = o.layers;
  const DType dt = o.dtype;
  const char* torch_dt = torch_dtype(dt);  // rejects other dtypes before any work
  const int hd = s.d / s.heads;
  std::vector<std::pair<std::string, std::vector<int64_t>>> spec;
  spec.push_back({"model.embed_tokens.weight", {s.vocab, s.d}});
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    spec.push_back({p + "input_layernorm.weight", {s.d}});
    spec.push_back({p + "self_attn.q_proj.weight", {int64_t(s.heads) * hd, s.d}});
    spec.push_back({p + "self_attn.k_proj.weight", {int64_t(s.kv_heads) * hd, s.d}});
    spec.push_back({p + "self_attn.v_proj.weight", {int64_t(s.kv_heads) * hd, s.d}});
    spec.push_back({p + "self_attn.o_proj.weight", {s.d, int64_t(s.heads) * hd}});
    spec.push_back({p + "post_attention_layernorm.weight", {s.d}});
    spec.push_back({p + "mlp.gate_proj.weight", {s.ff, s.d}});
    spec.push_back({p + "mlp.up_proj.weight", {s.ff, s.d}});
    spec.push_back({p + "mlp.down_proj.weight", {s.d, s.ff}});
  }
  spec.push_back({"model.norm.weight", {s.d}});
  if (!s.tied) spec.push_back({"lm_head.weight", {s.vocab, s.d}});

  std::vector<std::vector<uint8_t>> bufs;
  std::map<std::string, TensorView> tensors;
  Progress bar("synth", spec.size(), "");
  std::mt19937_64 rng(o.seed);
  const float a = 0.02f * std::sqrt(3.0f);  // uniform(-a, a) has std 0.02
  for (auto& [name, shape] : spec) {
    TensorView t;
    t.dtype = dt;
    t.shape = shape;
    t.nbytes = size_t(t.numel()) * dtype_size(dt);
    bufs.emplace_back(t.nbytes);
    uint8_t* p = bufs.back().data();
    const bool norm = shape.size() == 1;
    for (int64_t i = 0; i < t.numel(); ++i) {
      float v = norm ? 1.0f : a * (float(rng() >> 40) / float(1 << 23) * 2.0f - 1.0f);
      if (dt == DType::F32)
        std::memcpy(p + i * 4, &v, 4);
      else {
        uint16_t h = dt == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
        std::memcpy(p + i * 2, &h, 2);
      }
    }
    t.data = p;
    tensors[name] = t;
    bar.add(1);
  }
  bar.finish();
  std::filesystem::create_directories(out_dir);
  write_safetensors(out_dir + "/model.safetensors", tensors,
                    {{"format", "pt"}, {"note", "random weights (lowbit synth)"}});
  write_hf_config_json(out_dir, shape_config(s), {{"torch_dtype", torch_dt}});
  return tensors.size();
}

}  // namespace lowbit

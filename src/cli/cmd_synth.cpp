// lowbit synth --shape NAME --out DIR: a random-weight Hugging Face LLaMA checkpoint of a real model's shape,
// for speed and memory benchmarks of shapes we cannot ship (LLaMA-3.2-1B, LLaMA-3-8B, ...). Weights are
// uniform with standard deviation 0.02 (the LLaMA initializer range), norms are 1; outputs are meaningless
// but the cost is real.
#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <random>

#include "cli/commands.h"
#include "core/error.h"
#include "core/json.h"
#include "core/mmap.h"
#include "core/progress.h"
#include "io/safetensors.h"

namespace lowbit::cli {

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

}  // namespace

void add_synth(CLI::App& app, Global&, Commands& out) {
  auto* sub =
      app.add_subcommand("synth", "Write a random-weight HF checkpoint of a LLaMA shape (for benchmarks)");
  struct Opts {
    std::string shape = "llama3.2-1b", dtype = "bf16", out;
    int layers = 0;
    uint64_t seed = 0;
  };
  auto o = std::make_shared<Opts>();
  std::string names;
  for (auto& [k, v] : shapes()) names += (names.empty() ? "" : ", ") + k;
  sub->add_option("--shape", o->shape, "One of: " + names);
  sub->add_option("--dtype", o->dtype, "bf16, f16 or f32");
  sub->add_option("--layers", o->layers, "Override the number of layers (0 = the shape's)")
      ->check(at_least(0));
  sub->add_option("--seed", o->seed, "Random seed");
  sub->add_option("--out", o->out, "Output directory")->required();
  out.emplace_back(sub, [o]() {
    auto it = shapes().find(o->shape);
    if (it == shapes().end()) fail("--shape {}: unknown shape", o->shape);
    Shape s = it->second;
    if (o->layers > 0) s.layers = o->layers;
    DType dt;
    if (o->dtype == "bf16")
      dt = DType::BF16;
    else if (o->dtype == "f16")
      dt = DType::F16;
    else if (o->dtype == "f32")
      dt = DType::F32;
    else
      fail("--dtype {}: expected bf16, f16 or f32", o->dtype);
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
    std::mt19937_64 rng(o->seed);
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
    std::filesystem::create_directories(o->out);
    write_safetensors(o->out + "/model.safetensors", tensors,
                      {{"format", "pt"}, {"note", "random weights (lowbit synth)"}});
    Json cfg = {{"architectures", {"LlamaForCausalLM"}},
                {"model_type", "llama"},
                {"hidden_size", s.d},
                {"num_hidden_layers", s.layers},
                {"num_attention_heads", s.heads},
                {"num_key_value_heads", s.kv_heads},
                {"head_dim", hd},
                {"intermediate_size", s.ff},
                {"vocab_size", s.vocab},
                {"rms_norm_eps", 1e-5},
                {"rope_theta", s.theta},
                {"max_position_embeddings", s.ctx},
                {"tie_word_embeddings", s.tied},
                {"bos_token_id", 1},
                {"eos_token_id", 2},
                {"torch_dtype", o->dtype == "bf16"  ? "bfloat16"
                                : o->dtype == "f16" ? "float16"
                                                    : "float32"}};
    cfg["rope_scaling"] = s.llama3_scaling ? Json{{"rope_type", "llama3"},
                                                  {"factor", 32.0},
                                                  {"low_freq_factor", 1.0},
                                                  {"high_freq_factor", 4.0},
                                                  {"original_max_position_embeddings", 8192}}
                                           : Json(nullptr);
    write_file_atomic(o->out + "/config.json", cfg.dump(2) + "\n");
    fmt::print("wrote {} ({} tensors, shape {}, {})\n", o->out, tensors.size(), o->shape, o->dtype);
    return 0;
  });
}

}  // namespace lowbit::cli

// lowbit info MODEL: what a checkpoint is — architecture, shape, parameter count, dtypes, bytes.
#include <fmt/format.h>

#include <map>

#include "cli/common.h"
#include "core/error.h"
#include "core/mmap.h"
#include "core/progress.h"

namespace lowbit::cli {

namespace {

// {"<layer>.<linear>": [bits of each group]} from the sl_bits tensors
// ("model.layers.3.mlp.down_proj.sl_bits").
void write_slim_allocation(const Checkpoint& ck, const std::string& path, const std::string& out) {
  const std::string prefix = "model.layers.", suffix = ".sl_bits";
  Json j = Json::object();
  for (auto& [name, t] : ck.tensors) {
    if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    if (t.dtype != DType::U8 || t.shape.size() != 1) fail("{}: {} is not a U8 vector", path, name);
    const auto* b = static_cast<const uint8_t*>(t.data);
    j[name.substr(prefix.size(), name.size() - prefix.size() - suffix.size())] =
        std::vector<int>(b, b + t.numel());
  }
  if (j.empty()) fail("{}: not a SliM-LLM checkpoint (no .sl_bits tensors)", path);
  write_file_atomic(out, j.dump(1) + "\n");
  fmt::print("{}: the bits per group of {} linears -> {}\n", path, j.size(), out);
}

}  // namespace

void add_info(CLI::App& app, Global& g, Commands& out) {
  auto* sub = app.add_subcommand("info", "Describe a model checkpoint (HF directory, GGUF or llama2.c file)");
  auto model = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto alloc = std::make_shared<std::string>();
  sub->add_option("model", *model, "Model directory/file, or a name under the models dir")->required();
  sub->add_flag("--json", *json, "Print JSON");
  sub->add_option("--slim-allocation", *alloc,
                  "Write a SliM-LLM checkpoint's bits per group of every linear to this JSON file (what "
                  "quantize --method slim --allocation reads)");
  out.emplace_back(sub, [&g, model, json, alloc]() {
    const std::string path = resolve_model_path(*model, g.paths());
    Checkpoint ck = load_checkpoint(path);
    validate_llama_tensors(ck);
    if (!alloc->empty()) {
      write_slim_allocation(ck, path, *alloc);
      return 0;
    }
    const ModelConfig& c = ck.config;
    uint64_t params = 0, bytes = 0;
    std::map<std::string, uint64_t> by_dtype;
    for (auto& [name, t] : ck.tensors) {
      params += uint64_t(t.numel());
      bytes += t.nbytes;
      by_dtype[std::string(dtype_name(t.dtype))] += uint64_t(t.numel());
    }
    Json j = {{"path", path},
              {"format", ck.format},
              {"architecture", c.architecture},
              {"n_embd", c.n_embd},
              {"n_layer", c.n_layer},
              {"n_head", c.n_head},
              {"n_kv_head", c.n_kv_head},
              {"head_dim", c.head_dim},
              {"n_ff", c.n_ff},
              {"n_vocab", c.n_vocab},
              {"rope_theta", c.rope_theta},
              {"rope_scaling", c.rope_scaling.type.empty() ? "none" : c.rope_scaling.type},
              {"rope_style", c.rope_style == RopeStyle::Interleaved ? "interleaved" : "rotate_half"},
              {"norm_eps", c.norm_eps},
              {"max_position_embeddings", c.max_position_embeddings},
              {"tie_word_embeddings", c.tie_word_embeddings},
              {"tensors", ck.tensors.size()},
              {"parameters", params},
              {"bytes", bytes},
              {"parameters_by_dtype", by_dtype}};
    if (!c.quantization_config.is_null()) j["quantization_config"] = c.quantization_config;
    if (!ck.source_quantization.empty()) j["source_quantization"] = ck.source_quantization;
    if (*json) {
      fmt::print("{}\n", j.dump(2));
      return 0;
    }
    fmt::print("{}  ({}, {})\n", path, ck.format, c.architecture);
    fmt::print("  layers {}  embd {}  heads {} (kv {})  head_dim {}  ffn {}  vocab {}\n", c.n_layer, c.n_embd,
               c.n_head, c.n_kv_head, c.head_dim, c.n_ff, c.n_vocab);
    fmt::print("  rope theta {} scaling {} ({})  rms eps {}  context {}  tied head {}\n", c.rope_theta,
               j["rope_scaling"].get<std::string>(), j["rope_style"].get<std::string>(), c.norm_eps,
               c.max_position_embeddings, c.tie_word_embeddings ? "yes" : "no");
    if (!ck.source_quantization.empty())
      fmt::print("  quantization: {}, loaded as lowbit's affine format\n", ck.source_quantization);
    fmt::print("  {} tensors, {:.2f}M parameters, {}\n", ck.tensors.size(), double(params) / 1e6,
               format_bytes(bytes));
    for (auto& [dt, n] : by_dtype) fmt::print("    {:5} {:.2f}M\n", dt, double(n) / 1e6);
    return 0;
  });
}

}  // namespace lowbit::cli

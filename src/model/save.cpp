#include "model/save.h"

#include <fmt/format.h>

#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/mmap.h"
#include "core/paths.h"
#include "io/packed_tensors.h"
#include "io/safetensors.h"
#include "model/hf_config_json.h"

namespace fs = std::filesystem;

namespace lowbit {

namespace {

TensorView f32_view(const std::vector<float>& v) {
  TensorView t;
  t.dtype = DType::F32;
  t.shape = {int64_t(v.size())};
  t.data = v.data();
  t.nbytes = v.size() * 4;
  return t;
}

}  // namespace

uint64_t save_model(const LlamaModel& model, const std::string& out_dir, const Json& quantization_config) {
  const ModelConfig& c = model.config();
  const Checkpoint& ck = model.checkpoint();
  if (ck.format != "hf-safetensors")
    fail("{}: saving is supported for Hugging Face checkpoints (this one is {})", ck.path, ck.format);
  if (c.rope_style != RopeStyle::RotateHalf) fail("{}: cannot save an interleaved-RoPE model as HF", ck.path);
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) fail("{}: cannot create directory: {}", out_dir, ec.message());

  std::map<std::string, TensorView> tensors;
  Json formats = Json::object();  // packed linear -> its format
  tensors["model.embed_tokens.weight"] = ck.get("model.embed_tokens.weight");
  if (ck.has("lm_head.weight")) tensors["lm_head.weight"] = ck.get("lm_head.weight");
  tensors["model.norm.weight"] = f32_view(model.final_norm_weight());
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    // Norms as f32: methods such as AWQ fold scales into them.
    tensors[p + "input_layernorm.weight"] = f32_view(model.norm_weight(l, InputSite::AttnIn));
    tensors[p + "post_attention_layernorm.weight"] = f32_view(model.norm_weight(l, InputSite::MlpIn));
    for (LinearKind k : kAllLinears) {
      const Linear& w = model.linear(l, k);
      const std::string name = p + linear_name(k);
      if (w.input)
        fail("{}: {} has an input transform ({}), which lowbit checkpoints cannot store yet", out_dir, name,
             w.input->name());
      if (w.delta)
        fail("{}: {} has an unmerged LoRA adapter; save the adapter (PEFT layout) beside the base instead",
             out_dir, name);
      if (w.packed) {
        add_packed_tensors(tensors, name, *w.packed);
        formats[name] = w.packed->format().name;
      } else {
        TensorView t;
        t.dtype = w.dense.dtype;
        t.shape = {w.dense.rows, w.dense.cols};
        t.data = w.dense.data;
        t.nbytes = size_t(w.dense.rows * w.dense.cols) * dtype_size(w.dense.dtype);
        tensors[name + ".weight"] = t;
      }
    }
  }
  const std::string st = out_dir + "/model.safetensors";
  write_safetensors(st, tensors, {{"format", "pt"}, {"producer", std::string("lowbit ") + LOWBIT_VERSION}});
  // Which format each packed linear is in: one "format" when they agree, every linear's when they do not.
  Json qc = quantization_config;
  std::set<std::string> distinct;
  for (auto& [name, f] : formats.items()) distinct.insert(f.get<std::string>());
  if (distinct.size() == 1 && qc.is_object()) qc["format"] = *distinct.begin();
  if (distinct.size() > 1) {
    if (!qc.is_object()) qc = Json::object();
    qc["format"] = "mixed";
    qc["linear_formats"] = formats;
  }
  // hidden_act is LlamaConfig's default (silu); save_model has always written it and synth never has.
  Json extra = {{"hidden_act", "silu"}};
  if (!qc.is_null()) extra["quantization_config"] = qc;
  write_hf_config_json(out_dir, c, extra);
  // Tokenizer files travel with the model so the directory is self-contained.
  for (const char* f : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                        "generation_config.json", "special_tokens_map.json"}) {
    const std::string from = ck.path + "/" + f;
    if (path_exists(from)) write_file_atomic(out_dir + "/" + f, read_file(from));
  }
  return uint64_t(fs::file_size(st));
}

}  // namespace lowbit

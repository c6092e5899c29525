#include "model/save.h"

#include <fmt/format.h>

#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/mmap.h"
#include "core/paths.h"
#include "io/packed_tensors.h"
#include "io/safetensors.h"

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

Json config_json(const ModelConfig& c, const Json& qc) {
  Json j = {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"hidden_size", c.n_embd},
            {"num_hidden_layers", c.n_layer},
            {"num_attention_heads", c.n_head},
            {"num_key_value_heads", c.n_kv_head},
            {"head_dim", c.head_dim},
            {"intermediate_size", c.n_ff},
            {"vocab_size", c.n_vocab},
            {"rms_norm_eps", c.norm_eps},
            {"rope_theta", c.rope_theta},
            {"max_position_embeddings", c.max_position_embeddings},
            {"tie_word_embeddings", c.tie_word_embeddings},
            {"bos_token_id", c.bos_token_id},
            {"hidden_act", "silu"}};
  if (c.eos_token_ids.size() == 1)
    j["eos_token_id"] = c.eos_token_ids[0];
  else if (!c.eos_token_ids.empty())
    j["eos_token_id"] = c.eos_token_ids;
  if (c.rope_scaling.type.empty()) {
    j["rope_scaling"] = nullptr;
  } else {
    j["rope_scaling"] = {
        {"rope_type", c.rope_scaling.type},
        {"factor", c.rope_scaling.factor},
        {"low_freq_factor", c.rope_scaling.low_freq_factor},
        {"high_freq_factor", c.rope_scaling.high_freq_factor},
        {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings}};
  }
  if (!qc.is_null()) j["quantization_config"] = qc;
  return j;
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
  write_file_atomic(out_dir + "/config.json", config_json(c, qc).dump(2) + "\n");
  // Tokenizer files travel with the model so the directory is self-contained.
  for (const char* f : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                        "generation_config.json", "special_tokens_map.json"}) {
    const std::string from = ck.path + "/" + f;
    if (path_exists(from)) write_file_atomic(out_dir + "/" + f, read_file(from));
  }
  return uint64_t(fs::file_size(st));
}

}  // namespace lowbit

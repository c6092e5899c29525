#include "model/hf_config_json.h"

#include "core/error.h"
#include "core/mmap.h"

namespace lowbit {

void write_hf_config_json(const std::string& dir, const ModelConfig& c, const Json& extra) {
  LOWBIT_ASSERT(extra.is_object() && c.rope_style == RopeStyle::RotateHalf);
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
            {"bos_token_id", c.bos_token_id}};
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
  j.update(extra);
  write_file_atomic(dir + "/config.json", j.dump(2) + "\n");
}

}  // namespace lowbit

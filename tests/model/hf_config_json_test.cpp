// model/hf_config_json.h: what it writes, io/hf_config.h reads back as the same config.
#include "model/hf_config_json.h"

#include <gtest/gtest.h>

#include "io/hf_config.h"
#include "test_util.h"

namespace lowbit {
namespace {

ModelConfig llama31_like() {
  ModelConfig c;
  c.n_embd = 256, c.n_layer = 3, c.n_head = 8, c.n_kv_head = 2, c.head_dim = 32, c.n_ff = 512;
  c.n_vocab = 1000;
  c.norm_eps = 1e-6;
  c.rope_theta = 500000;
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = 8;
  c.rope_scaling.original_max_position_embeddings = 4096;
  c.max_position_embeddings = 16384;
  c.tie_word_embeddings = true;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001, 128008, 128009};
  return c;
}

TEST(HfConfigJson, ReadsBackAsTheSameConfig) {
  const std::string dir = test::temp_dir("hfcfg");
  const ModelConfig c = llama31_like();
  write_hf_config_json(dir, c, {{"torch_dtype", "bfloat16"}});
  const ModelConfig r = load_hf_config(dir + "/config.json");
  EXPECT_EQ(r.n_embd, c.n_embd);
  EXPECT_EQ(r.n_layer, c.n_layer);
  EXPECT_EQ(r.n_head, c.n_head);
  EXPECT_EQ(r.n_kv_head, c.n_kv_head);
  EXPECT_EQ(r.head_dim, c.head_dim);
  EXPECT_EQ(r.n_ff, c.n_ff);
  EXPECT_EQ(r.n_vocab, c.n_vocab);
  EXPECT_EQ(r.norm_eps, c.norm_eps);
  EXPECT_EQ(r.rope_theta, c.rope_theta);
  EXPECT_EQ(r.rope_scaling.type, "llama3");
  EXPECT_EQ(r.rope_scaling.factor, 8);
  EXPECT_EQ(r.rope_scaling.low_freq_factor, c.rope_scaling.low_freq_factor);
  EXPECT_EQ(r.rope_scaling.high_freq_factor, c.rope_scaling.high_freq_factor);
  EXPECT_EQ(r.rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_EQ(r.max_position_embeddings, c.max_position_embeddings);
  EXPECT_EQ(r.tie_word_embeddings, true);
  EXPECT_EQ(r.bos_token_id, c.bos_token_id);
  EXPECT_EQ(r.eos_token_ids, c.eos_token_ids);
  EXPECT_TRUE(r.quantization_config.is_null());
  const Json j = parse_json_file(dir + "/config.json");
  EXPECT_EQ(j["torch_dtype"], "bfloat16");
  EXPECT_EQ(j["architectures"], Json::array({"LlamaForCausalLM"}));
}

TEST(HfConfigJson, OneEosIsANumberAndNoScalingIsNull) {
  const std::string dir = test::temp_dir("hfcfg1");
  ModelConfig c = llama31_like();
  c.eos_token_ids = {2};
  c.rope_scaling = {};
  write_hf_config_json(dir, c, {{"quantization_config", {{"bits", 4}}}});
  const Json j = parse_json_file(dir + "/config.json");
  EXPECT_EQ(j["eos_token_id"], 2);
  EXPECT_TRUE(j["rope_scaling"].is_null());
  EXPECT_FALSE(j.contains("hidden_act"));
  EXPECT_EQ(load_hf_config(dir + "/config.json").quantization_config, Json({{"bits", 4}}));
}

}  // namespace
}  // namespace lowbit

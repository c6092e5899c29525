#include "io/hf_checkpoint.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "core/sha256.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "io_test_util.h"

namespace lowbit {
namespace {

using test::throws_error;

Json base_config() {
  return Json::parse(
      R"({"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
    "num_key_value_heads": 1, "intermediate_size": 12, "vocab_size": 10, "rms_norm_eps": 1e-5,
    "tie_word_embeddings": false})");
}

TEST(HfConfig, TestbedConfig) {
  ModelConfig c = load_hf_config(test::model_path("testbed-25m") + "/config.json");
  EXPECT_EQ(c.n_embd, 384);
  EXPECT_EQ(c.n_layer, 8);
  EXPECT_EQ(c.n_head, 6);
  EXPECT_EQ(c.n_kv_head, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.n_ff, 1024);
  EXPECT_EQ(c.n_vocab, 32000);
  EXPECT_EQ(c.norm_eps, 1e-5);
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "");
  EXPECT_EQ(c.rope_style, RopeStyle::RotateHalf);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{2});
  EXPECT_TRUE(c.quantization_config.is_null());
}

TEST(HfConfig, DefaultsAndVariants) {
  Json j = base_config();
  j.erase("num_key_value_heads");
  j.erase("rms_norm_eps");
  ModelConfig c = parse_hf_config(j, "config.json");
  EXPECT_EQ(c.n_kv_head, 2);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.norm_eps, 1e-6);  // transformers LlamaConfig default
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{2});

  // LLaMA-3.1 style: list of EOS ids, llama3 rope scaling, explicit head_dim, quantization_config kept.
  j = base_config();
  j["head_dim"] = 6;
  j["bos_token_id"] = 128000;
  j["eos_token_id"] = {128001, 128008, 128009};
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = Json::parse(R"({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})");
  j["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}};
  c = parse_hf_config(j, "config.json");
  EXPECT_EQ(c.head_dim, 6);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.quantization_config["bits"], 4);

  // transformers >= 5: theta and scaling inside rope_parameters; "default" means none.
  j = base_config();
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 250000.0}};
  c = parse_hf_config(j, "config.json");
  EXPECT_EQ(c.rope_theta, 250000.0);
  EXPECT_EQ(c.rope_scaling.type, "");
  j["rope_parameters"] = Json::parse(R"({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
      "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})");
  c = parse_hf_config(j, "config.json");
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.rope_scaling.factor, 32.0);
  j = base_config();
  j["rope_scaling"] = {{"type", "default"}};
  EXPECT_EQ(parse_hf_config(j, "config.json").rope_scaling.type, "");
}

TEST(HfConfig, BadConfigs) {
  auto bad = [](std::function<void(Json&)> edit, std::initializer_list<std::string> needles) {
    Json j = base_config();
    edit(j);
    return throws_error([&] { parse_hf_config(j, "/x/config.json"); }, needles);
  };
  EXPECT_TRUE(bad([](Json& j) { j.erase("hidden_size"); }, {"/x/config.json", "'hidden_size'", "missing"}));
  EXPECT_TRUE(bad([](Json& j) { j.erase("vocab_size"); }, {"config.json", "'vocab_size'"}));
  EXPECT_TRUE(
      bad([](Json& j) { j["hidden_size"] = "384"; }, {"config.json", "'hidden_size'", "positive integer"}));
  EXPECT_TRUE(bad([](Json& j) { j["num_hidden_layers"] = 0; }, {"'num_hidden_layers'"}));
  EXPECT_TRUE(bad([](Json& j) { j["intermediate_size"] = 1.5; }, {"'intermediate_size'"}));
  EXPECT_TRUE(bad([](Json& j) { j["rms_norm_eps"] = "small"; }, {"'rms_norm_eps'"}));
  EXPECT_TRUE(bad([](Json& j) { j["model_type"] = "mistral"; }, {"config.json", "model_type", "mistral"}));
  EXPECT_TRUE(bad([](Json& j) { j.erase("model_type"); }, {"'model_type'"}));
  EXPECT_TRUE(bad([](Json& j) { j["num_key_value_heads"] = 3; }, {"not divisible"}));
  EXPECT_TRUE(bad([](Json& j) { j["hidden_size"] = 9; }, {"not divisible"}));
  EXPECT_TRUE(bad([](Json& j) { j["tie_word_embeddings"] = 1; }, {"'tie_word_embeddings'"}));
  EXPECT_TRUE(bad([](Json& j) { j["eos_token_id"] = "x"; }, {"'eos_token_id'"}));
  EXPECT_TRUE(bad(
      [](Json& j) {
        j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
      },
      {"config.json", "'yarn'", "not supported"}));
  EXPECT_TRUE(bad(
      [](Json& j) {
        j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
      },
      {"'rope_scaling.low_freq_factor'"}));
  EXPECT_TRUE(bad([](Json& j) { j["rope_scaling"] = 2; }, {"'rope_scaling'"}));
  EXPECT_TRUE(throws_error([] { parse_hf_config(Json::array(), "/x/config.json"); }, {"/x/config.json"}));
}

TEST(HfConfig, MalformedJsonNamesFile) {
  std::string dir = test::temp_dir("hfcfg");
  test::write_bytes(dir + "/config.json", "{\"hidden_size\": 8,");
  EXPECT_TRUE(throws_error([&] { load_hf_config(dir + "/config.json"); }, {"config.json", "malformed JSON"}));
}

TEST(HfCheckpoint, TestbedShards) {
  std::string dir = test::model_path("testbed-25m");
  Checkpoint c = load_hf_checkpoint(dir);
  EXPECT_EQ(c.format, "hf-safetensors");
  EXPECT_EQ(c.tensors.size(), 74u);  // embed + 8 x 9 + norm; lm_head tied
  EXPECT_FALSE(c.has("lm_head.weight"));
  EXPECT_EQ(c.owners.size(), 3u);
  const TensorView& e = c.get("model.embed_tokens.weight");
  EXPECT_EQ(e.dtype, DType::BF16);
  EXPECT_EQ(sha256_hex(e.data, e.nbytes), "23fd2da3ef4a95a0af991ad8baff7545cfd2e0cea13c8f5d37f2f88a439b4784");
  EXPECT_NE(e.source.find("model-00001-of-00003.safetensors"), std::string::npos);
  validate_llama_tensors(c);
  EXPECT_TRUE(throws_error([&] { c.get("lm_head.weight"); }, {dir, "missing tensor lm_head.weight"}));
}

// A tiny HF directory (config above, f32 tensors with values i * 0.5) written with write_safetensors.
struct TinyModel {
  std::vector<std::vector<float>> bufs;
  std::map<std::string, TensorView> tensors;

  TinyModel() {
    const int64_t E = 8, F = 12, V = 10, Q = 8, K = 4;
    add("model.embed_tokens.weight", {V, E});
    add("model.layers.0.input_layernorm.weight", {E});
    add("model.layers.0.self_attn.q_proj.weight", {Q, E});
    add("model.layers.0.self_attn.k_proj.weight", {K, E});
    add("model.layers.0.self_attn.v_proj.weight", {K, E});
    add("model.layers.0.self_attn.o_proj.weight", {E, Q});
    add("model.layers.0.post_attention_layernorm.weight", {E});
    add("model.layers.0.mlp.gate_proj.weight", {F, E});
    add("model.layers.0.mlp.up_proj.weight", {F, E});
    add("model.layers.0.mlp.down_proj.weight", {E, F});
    add("model.norm.weight", {E});
    add("lm_head.weight", {V, E});
  }
  void add(const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    bufs.emplace_back(size_t(n));
    for (int64_t i = 0; i < n; ++i) bufs.back()[size_t(i)] = float(i) * 0.5f;
    tensors[name] = {DType::F32, shape, bufs.back().data(), size_t(n) * 4, ""};
  }
  std::string write_dir(const std::string& tag, bool sharded) {
    std::string dir = test::temp_dir(tag);
    test::write_bytes(dir + "/config.json", base_config().dump());
    if (!sharded) {
      write_safetensors(dir + "/model.safetensors", tensors);
      return dir;
    }
    std::map<std::string, TensorView> a, b;
    Json wm;
    for (auto& [k, v] : tensors) {
      bool first = k.find("layers") == std::string::npos;
      (first ? a : b)[k] = v;
      wm[k] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    }
    write_safetensors(dir + "/model-00001-of-00002.safetensors", a);
    write_safetensors(dir + "/model-00002-of-00002.safetensors", b);
    test::write_bytes(dir + "/model.safetensors.index.json", Json{{"weight_map", wm}}.dump());
    return dir;
  }
};

TEST(HfCheckpoint, TinySingleAndSharded) {
  for (bool sharded : {false, true}) {
    TinyModel m;
    Checkpoint c = load_hf_checkpoint(m.write_dir("hf-tiny", sharded));
    ASSERT_EQ(c.tensors.size(), 12u);
    EXPECT_EQ(c.owners.size(), sharded ? 2u : 1u);
    validate_llama_tensors(c);
    const TensorView& t = c.get("model.layers.0.mlp.down_proj.weight");
    EXPECT_EQ(t.shape, (std::vector<int64_t>{8, 12}));
    EXPECT_EQ(t.as<float>()[95], 47.5f);
  }
}

TEST(HfCheckpoint, MissingShardAndTensor) {
  TinyModel m;
  std::string dir = m.write_dir("hf-noshard", true);
  std::remove((dir + "/model-00002-of-00002.safetensors").c_str());
  EXPECT_TRUE(
      throws_error([&] { load_hf_checkpoint(dir); },
                   {"model.safetensors.index.json", "model-00002-of-00002.safetensors", "not found"}));

  dir = m.write_dir("hf-notensor", true);
  Json idx = parse_json_file(dir + "/model.safetensors.index.json");
  idx["weight_map"]["model.layers.0.extra.weight"] = "model-00002-of-00002.safetensors";
  test::write_bytes(dir + "/model.safetensors.index.json", idx.dump());
  EXPECT_TRUE(throws_error([&] { load_hf_checkpoint(dir); },
                           {"model-00002-of-00002.safetensors", "'model.layers.0.extra.weight'", "missing"}));

  idx["weight_map"]["model.layers.0.extra.weight"] = "../../etc/passwd";
  test::write_bytes(dir + "/model.safetensors.index.json", idx.dump());
  EXPECT_TRUE(throws_error([&] { load_hf_checkpoint(dir); }, {"invalid shard file"}));
  test::write_bytes(dir + "/model.safetensors.index.json", "{\"weight_map\": 3}");
  EXPECT_TRUE(throws_error([&] { load_hf_checkpoint(dir); }, {"model.safetensors.index.json", "weight_map"}));

  std::string empty = test::temp_dir("hf-empty");
  test::write_bytes(empty + "/config.json", base_config().dump());
  EXPECT_TRUE(throws_error([&] { load_hf_checkpoint(empty); }, {empty, "model.safetensors"}));
  EXPECT_TRUE(throws_error([&] { load_hf_checkpoint(test::temp_dir("hf-none")); }, {"config.json"}));
}

TEST(HfCheckpoint, ValidateShapeAndDtypeMismatch) {
  {
    TinyModel m;
    m.add("model.layers.0.self_attn.k_proj.weight", {8, 8});  // config says (4, 8)
    std::string dir = m.write_dir("hf-shape", false);
    Checkpoint c = load_hf_checkpoint(dir);
    EXPECT_TRUE(throws_error(
        [&] { validate_llama_tensors(c); },
        {dir + "/model.safetensors", "model.layers.0.self_attn.k_proj.weight", "(8, 8)", "expects (4, 8)"}));
  }
  {
    TinyModel m;
    std::vector<int32_t> ints(8);
    m.tensors["model.norm.weight"] = {DType::I32, {8}, ints.data(), 32, ""};
    std::string dir = m.write_dir("hf-dtype", false);
    Checkpoint c = load_hf_checkpoint(dir);
    EXPECT_TRUE(
        throws_error([&] { validate_llama_tensors(c); }, {"model.safetensors", "model.norm.weight", "I32"}));
  }
  {
    TinyModel m;
    m.tensors.erase("lm_head.weight");  // config: tie_word_embeddings false
    Checkpoint c = load_hf_checkpoint(m.write_dir("hf-nohead", false));
    EXPECT_TRUE(throws_error([&] { validate_llama_tensors(c); }, {"missing tensor lm_head.weight"}));
  }
}

}  // namespace
}  // namespace lowbit

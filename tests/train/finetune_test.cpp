// The fine-tuning loop and the adapter files: a run killed at any point and resumed ends with exactly the
// adapter of an uninterrupted run; a diverging loss stops with a clear error and keeps the last good
// checkpoint; adapters round-trip through PEFT's layout and mismatches are refused.
#include "train/finetune.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "core/error.h"
#include "core/json.h"
#include "core/mmap.h"
#include "quant/synth.h"
#include "test_util.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;

test::SynthSpec spec() {
  test::SynthSpec s;
  s.n_embd = 32, s.n_layer = 2, s.n_head = 4, s.n_kv_head = 2, s.head_dim = 8, s.n_ff = 64, s.n_vocab = 48;
  return s;
}

// Short "instruction" examples: a prompt without loss, then a response with it.
std::vector<TrainExample> examples(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<TrainExample> out;
  for (int i = 0; i < n; ++i) {
    TrainExample ex;
    const int len = 6 + int(rng() % 10), prompt = 2 + int(rng() % 3);
    for (int t = 0; t < len; ++t) ex.tokens.push_back(int32_t(rng() % 48));
    for (int t = 0; t < len; ++t)
      ex.labels.push_back(t + 1 < len && t + 1 >= prompt ? ex.tokens[size_t(t + 1)] : kIgnoreLabel);
    out.push_back(ex);
  }
  return out;
}

FinetuneOptions options() {
  FinetuneOptions o;
  o.steps = 6;
  o.batch = 4;
  o.micro_batch = 2;
  o.lr = 1e-2;
  o.save_every = 2;
  o.warmup_ratio = 0.2;
  o.max_grad_norm = 0.3;
  o.quiet = true;
  return o;
}

LoraConfig lora_config() {
  LoraConfig c;
  c.rank = 4;
  c.dropout = 0.1;  // dropout masks must also repeat after a resume
  c.iec = true;
  return c;
}

std::vector<float> flat(LoraSet& lora) {
  std::vector<float> v;
  for (auto& e : lora.entries()) {
    v.insert(v.end(), e.adapter->A.begin(), e.adapter->A.end());
    v.insert(v.end(), e.adapter->B.begin(), e.adapter->B.end());
    v.push_back(e.adapter->beta_a);
    v.push_back(e.adapter->beta_b);
  }
  return v;
}

struct KilledAt {
  int64_t step;
};

// Runs to the end, or until the hook "kills" the run after step kill_after.
std::vector<float> run(const LlamaModel& model, const std::string& dir, int64_t kill_after = -1) {
  LoraSet lora(model, lora_config());
  set_finetune_step_hook([&](int64_t step) {
    if (step == kill_after) throw KilledAt{step};
  });
  try {
    finetune(model, lora, examples(10, 1), options(), AdapterMeta{"lora", "synthetic", "fp"}, dir);
  } catch (const KilledAt&) {
    set_finetune_step_hook(nullptr);
    return {};
  }
  set_finetune_step_hook(nullptr);
  return flat(lora);
}

TEST(Finetune, ResumeAfterAKillGivesExactlyTheUninterruptedAdapter) {
  auto model = test::make_synth_model(spec());
  const std::string base = test::temp_dir("finetune_resume");
  const std::vector<float> whole = run(*model, base + "/whole");
  ASSERT_FALSE(whole.empty());
  // killed after a step that was not checkpointed (3), and right after one that was (4)
  for (int64_t kill : {3, 4, 1}) {
    const std::string dir = base + "/killed" + std::to_string(kill);
    EXPECT_TRUE(run(*model, dir, kill).empty());
    EXPECT_EQ(run(*model, dir), whole) << "killed after step " << kill;
  }
  // a kill between the two renames of a checkpoint swap leaves only checkpoint.old
  const std::string dir = base + "/between";
  run(*model, dir, 5);
  fs::rename(dir + "/checkpoint", dir + "/checkpoint.old");
  EXPECT_EQ(run(*model, dir), whole);
  // the final adapter on disk is the trained one
  LoraSet loaded = load_adapter(base + "/whole", *model, "fp");
  EXPECT_EQ(flat(loaded), whole);
}

TEST(Finetune, TrainingLowersTheLoss) {
  auto model = test::make_synth_model(spec());
  LoraSet lora(*model, lora_config());
  FinetuneOptions o = options();
  o.steps = 30;
  o.save_every = 100;
  const auto data = examples(8, 2);
  const FinetuneResult r =
      finetune(*model, lora, data, o, AdapterMeta{"lora", "synthetic", ""}, test::temp_dir("finetune_lower"));
  ASSERT_EQ(r.losses.size(), 30u);
  EXPECT_LT(r.losses.back(), 0.8 * r.losses.front());
}

TEST(Finetune, DivergingLossStopsAndKeepsTheLastGoodCheckpoint) {
  auto model = test::make_synth_model(spec());
  LoraSet lora(*model, lora_config());
  const std::string dir = test::temp_dir("finetune_nan");
  set_finetune_step_hook([&](int64_t step) {
    if (step == 2) lora.entries()[0].adapter->B[0] = std::nanf("");  // after step 2's checkpoint
  });
  try {
    finetune(*model, lora, examples(10, 1), options(), AdapterMeta{"lora", "synthetic", ""}, dir);
    FAIL() << "a NaN loss was not reported";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("diverged at step 3"), std::string::npos) << m;
    EXPECT_NE(m.find("checkpoint"), std::string::npos) << m;
  }
  set_finetune_step_hook(nullptr);
  EXPECT_EQ(parse_json_file(dir + "/checkpoint/trainer_state.json")["step"].get<int>(), 2);
}

TEST(Finetune, ResumingWithOtherOptionsIsRefused) {
  auto model = test::make_synth_model(spec());
  const std::string dir = test::temp_dir("finetune_opts");
  run(*model, dir, 2);
  LoraSet lora(*model, lora_config());
  FinetuneOptions o = options();
  o.lr = 1e-3;
  EXPECT_THROW(finetune(*model, lora, examples(10, 1), o, AdapterMeta{"lora", "synthetic", "fp"}, dir),
               Error);
}

TEST(Finetune, CorruptTrainingStateIsAClearError) {
  auto model = test::make_synth_model(spec());
  const std::string dir = test::temp_dir("finetune_corrupt");
  run(*model, dir, 2);
  const std::string state = dir + "/checkpoint/trainer_state.json";
  Json j = parse_json_file(state);
  j["losses"] = Json::array({1.0});  // one loss for two steps
  write_file_atomic(state, j.dump());
  LoraSet lora(*model, lora_config());
  try {
    finetune(*model, lora, examples(10, 1), options(), AdapterMeta{"lora", "synthetic", "fp"}, dir);
    FAIL() << "a corrupt training state was accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("trainer_state.json: step 2 with 1 losses"), std::string::npos) << m;
  }
  write_file_atomic(state, "{\"step\": \"two\"}");
  EXPECT_THROW(
      finetune(*model, lora, examples(10, 1), options(), AdapterMeta{"lora", "synthetic", "fp"}, dir), Error);
}

TEST(PeftAdapter, RoundTripAndMismatchesAreRefused) {
  auto model = test::make_synth_model(spec());
  LoraConfig c = lora_config();
  c.targets = {LinearKind::Q, LinearKind::V, LinearKind::Down};
  LoraSet lora(*model, c);
  for (auto& e : lora.entries()) {
    e.adapter->B[0] = 0.5f;
    e.adapter->beta_b = -0.25f;
  }
  const std::string dir = test::temp_dir("peft_roundtrip");
  save_adapter(dir, lora, AdapterMeta{"ir-qlora", "synthetic", "abc"});
  const Json cfg = parse_json_file(dir + "/adapter_config.json");
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["target_modules"], Json::array({"q_proj", "v_proj", "down_proj"}));
  LoraSet back = load_adapter(dir, *model, "abc");
  EXPECT_EQ(flat(back), flat(lora));
  EXPECT_EQ(back.config().targets, c.targets);

  auto expect_error = [&](const std::string& fingerprint, const char* what) {
    try {
      load_adapter(dir, *model, fingerprint);
      FAIL() << "accepted: " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error("other", "trained on another base model");
  // a model of another shape
  test::SynthSpec wide = spec();
  wide.n_ff = 96;
  auto other = test::make_synth_model(wide);
  try {
    load_adapter(dir, *other, "");
    FAIL() << "an adapter of other shapes was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has shape (4, 64), the model's linear implies (4, 96)"),
              std::string::npos)
        << e.what();
  }
  // a config that is not LoRA, and one targeting an unknown module
  Json bad = cfg;
  bad["peft_type"] = "IA3";
  write_file_atomic(dir + "/adapter_config.json", bad.dump());
  expect_error("abc", "peft_type is not \"LORA\"");
  bad = cfg;
  bad["target_modules"] = Json::array({"q_proj", "lm_head"});
  write_file_atomic(dir + "/adapter_config.json", bad.dump());
  expect_error("abc", "target module 'lm_head'");
  // a missing tensor: the config targets a linear the weights do not have
  bad = cfg;
  bad["target_modules"] = Json::array({"q_proj", "k_proj", "v_proj", "down_proj"});
  write_file_atomic(dir + "/adapter_config.json", bad.dump());
  expect_error("abc", "missing tensor base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight");
}

TEST(PeftAdapter, FingerprintTellsModelsApart) {
  auto a = test::make_synth_model(spec());
  test::SynthSpec s = spec();
  s.seed = 2;
  auto b = test::make_synth_model(s);
  EXPECT_EQ(base_fingerprint(a->checkpoint()),
            base_fingerprint(test::make_synth_model(spec())->checkpoint()));
  EXPECT_NE(base_fingerprint(a->checkpoint()), base_fingerprint(b->checkpoint()));
}

}  // namespace
}  // namespace lowbit

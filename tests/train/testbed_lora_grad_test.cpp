// LoRA gradients on testbed-25m against PyTorch autograd (tools/ref_lora_grad.py, committed as
// testbed_lora_grad_ref.json): the same batch (the golden wikitext ids of refs/testbed-25m.json) and the
// same adapters (rebuilt from the counter-based hash of train/rng.h on both sides), on the dense base,
// QLoRA's NF4 base and IR-QLoRA's NF4+ICQ base (dequantized by the tool through tools/ref_nf4.py's
// independent bitsandbytes port), without and with IEC. The reference runs in float64, the exact answer for
// lowbit's float32 arithmetic (torch's own float32 run is 1.4e-6 relative off it in the loss; lowbit's is
// 1e-8 off). The loss agrees within 1e-6 relative and every gradient tensor within 1e-4 relative (measured:
// 6e-6 at worst). IEC's β gradients are sums that cancel (|Σ| ≪ Σ|terms|), so for them "relative" is taken
// against Σ|terms|, the scale any float32 evaluation is accurate to (torch's float32 run misses them by up to
// 6e-4 of |Σ|; lowbit by 7e-7 of Σ|terms|). With LOWBIT_DUMP_LORA_GRADS=PATH the test also writes every
// gradient (raw f32, PATH.<variant>) for the tool's entry-by-entry --compare.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <tuple>

#include "core/json.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "test_util.h"
#include "train/grad_ops.h"
#include "train/llama_train.h"
#include "train/qlora.h"

namespace lowbit {
namespace {

Json reference() {
  std::ifstream f(std::filesystem::path(__FILE__).parent_path() / "testbed_lora_grad_ref.json");
  return Json::parse(f);
}

// The tool's batch: ids [0, 40) and [40, 64), next-token labels, the first 10 of the first ignored.
TrainBatch golden_batch() {
  std::vector<int32_t> ids;
  for (const auto& v : test::testbed_refs()["golden"]["input_ids"]) ids.push_back(v.get<int32_t>());
  TrainBatch b;
  for (auto [a, e] : {std::pair{0, 40}, std::pair{40, 64}}) {
    std::vector<int32_t> tok(ids.begin() + a, ids.begin() + e), lab;
    for (size_t t = 0; t < tok.size(); ++t) lab.push_back(t + 1 < tok.size() ? tok[t + 1] : kIgnoreLabel);
    if (a == 0)
      for (int t = 0; t < 10; ++t) lab[size_t(t)] = kIgnoreLabel;
    b.add(tok, lab);
  }
  return b;
}

TEST(TrainTestbed, LoraGradientsMatchPyTorch) {
  const Json ref = reference();
  const TrainBatch b = golden_batch();
  // (variant, IEC, the fine-tuning method whose base it uses)
  const std::tuple<const char*, bool, const char*> variants[] = {{"dense", false, "lora"},
                                                                 {"dense_iec", true, "lora"},
                                                                 {"nf4", false, "qlora"},
                                                                 {"nf4_icq_iec", true, "ir-qlora"}};
  for (const auto& [variant, iec, method] : variants) {
    SCOPED_TRACE(variant);
    LlamaModel model(load_checkpoint(test::model_path("testbed-25m")));
    model.keep_f32_weights();
    prepare_finetune_base(model, method, true);
    const Json& want = ref["variants"][variant];
    LoraConfig cfg;
    cfg.rank = ref["rank"].get<int>();
    cfg.alpha = ref["alpha"].get<double>();
    cfg.seed = ref["seed"].get<uint64_t>();
    cfg.iec = iec;
    LoraSet lora(model, cfg);
    for (auto& e : lora.entries()) {  // B and β as the tool sets them
      const uint64_t bkey = subkey(ref["b_seed"].get<uint64_t>(), uint64_t(e.layer * 7 + int(e.kind)));
      for (size_t i = 0; i < e.adapter->B.size(); ++i)
        e.adapter->B[i] = float(0.05 * (2 * uniform01(bkey, i) - 1));
      if (iec) {
        e.adapter->beta_a = float(0.1 * (2 * uniform01(subkey(bkey, 1), 0) - 1));
        e.adapter->beta_b = float(0.1 * (2 * uniform01(subkey(bkey, 1), 1) - 1));
      }
    }
    LlamaTrainer tr(model, lora);
    const float scale = 1.0f / float(b.n_targets());
    const LossSum l = tr.forward_backward(b, scale, 0);
    ASSERT_EQ(l.n_targets, want["n_targets"].get<int64_t>());
    const double want_loss = want["loss"].get<double>();
    EXPECT_NEAR(l.mean(), want_loss, 1e-6 * want_loss);

    // Every tensor in the tool's order: A, B (β_A, β_B) per adapter.
    std::vector<std::vector<float>> grads;
    for (auto& e : lora.entries()) {
      grads.push_back(e.adapter->dA);
      grads.push_back(e.adapter->dB);
      if (iec) grads.push_back({e.adapter->dbeta_a}), grads.push_back({e.adapter->dbeta_b});
    }
    const Json& tensors = want["tensors"];
    ASSERT_EQ(grads.size(), tensors.size());
    const uint64_t proj_seed = ref["proj_seed"].get<uint64_t>();
    for (size_t t = 0; t < grads.size(); ++t) {
      const Json& w = tensors[t];
      const std::vector<float>& g = grads[t];
      SCOPED_TRACE(w["name"].get<std::string>());
      ASSERT_EQ(int64_t(g.size()), w["size"].get<int64_t>());
      double norm = 0, proj = 0, unorm = 0;
      const uint64_t pk = subkey(proj_seed, t);
      for (size_t i = 0; i < g.size(); ++i) {
        const double u = 2 * uniform01(pk, i) - 1;
        norm += double(g[i]) * g[i];
        proj += g[i] * u;
        unorm += u * u;
      }
      norm = std::sqrt(norm);
      const double tol = 1e-4, cond = w.contains("abs_sum") ? w["abs_sum"].get<double>() : 0.0;
      const double wn = std::max(w["norm"].get<double>(), cond);
      EXPECT_NEAR(norm, w["norm"].get<double>(), tol * wn);
      EXPECT_NEAR(proj, w["proj"].get<double>(), tol * wn * std::sqrt(unorm));
      const double mx = std::max(w["max_abs"].get<double>(), cond);
      for (const auto& s : w["samples"]) {
        const size_t i = s[0].get<size_t>();
        EXPECT_NEAR(g[i], s[1].get<double>(), tol * mx) << "entry " << i;
      }
    }
    if (const char* dump = std::getenv("LOWBIT_DUMP_LORA_GRADS")) {
      std::ofstream f(std::string(dump) + "." + variant, std::ios::binary);
      for (const auto& g : grads)
        f.write(reinterpret_cast<const char*>(g.data()), std::streamsize(g.size() * 4));
    }
  }
}

}  // namespace
}  // namespace lowbit

// The training engine on a small random LLaMA (tests/quant/synth.h): its loss equals the inference forward's
// cross-entropy, its gradients match finite differences (dense, packed, IEC), gradient checkpointing changes
// nothing, runs repeat exactly, and merged adapters give the model the adapters trained.
#include "train/llama_train.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "kernels/ops.h"
#include "quant/methods/rtn.h"
#include "quant/synth.h"
#include "train/grad_ops.h"

namespace lowbit {
namespace {

test::SynthSpec small_spec() {
  test::SynthSpec s;
  s.n_embd = 32, s.n_layer = 2, s.n_head = 4, s.n_kv_head = 2, s.head_dim = 8, s.n_ff = 64, s.n_vocab = 48;
  return s;
}

// Two sequences; the first has loss on its second half only (as an instruction's response), the second on
// every position but its last.
TrainBatch small_batch(int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  TrainBatch b;
  for (int len : {9, 6}) {
    std::vector<int32_t> tok(static_cast<size_t>(len)), lab(static_cast<size_t>(len));
    for (int32_t& t : tok) t = int32_t(rng() % uint32_t(vocab));
    for (int t = 0; t < len; ++t) lab[size_t(t)] = t + 1 < len ? tok[size_t(t + 1)] : kIgnoreLabel;
    if (len == 9)
      for (int t = 0; t < 4; ++t) lab[size_t(t)] = kIgnoreLabel;
    b.add(tok, lab);
  }
  return b;
}

// Every adapter's B (and β) made non-zero, so every parameter has a gradient.
void randomize(LoraSet& lora, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 0.3f);
  for (auto& e : lora.entries()) {
    for (float& v : e.adapter->B) v = nd(rng);
    e.adapter->beta_a = nd(rng);
    e.adapter->beta_b = nd(rng);
  }
}

// Every trainable value and its gradient, flattened in entries() order.
struct Flat {
  std::vector<float*> value;
  std::vector<float*> grad;
};
Flat flatten(LoraSet& lora) {
  Flat f;
  for (auto& e : lora.entries()) {
    LoraAdapter& a = *e.adapter;
    for (size_t i = 0; i < a.A.size(); ++i) f.value.push_back(&a.A[i]), f.grad.push_back(&a.dA[i]);
    for (size_t i = 0; i < a.B.size(); ++i) f.value.push_back(&a.B[i]), f.grad.push_back(&a.dB[i]);
    if (a.iec) {
      f.value.push_back(&a.beta_a), f.grad.push_back(&a.dbeta_a);
      f.value.push_back(&a.beta_b), f.grad.push_back(&a.dbeta_b);
    }
  }
  return f;
}

TEST(TrainLlama, LossEqualsTheInferenceForward) {
  auto model = test::make_synth_model(small_spec());
  LoraConfig cfg;
  cfg.rank = 4;
  LoraSet lora(*model, cfg);  // B = 0: the adapters change nothing
  LlamaTrainer tr(*model, lora);
  const TrainBatch b = small_batch(48, 1);
  const LossSum got = tr.loss(b);
  double want = 0;
  int64_t count = 0;
  for (size_t s = 0; s + 1 < b.starts.size(); ++s) {
    const int b0 = b.starts[s], T = b.starts[s + 1] - b0;
    std::vector<int32_t> tok(b.tokens.begin() + b0, b.tokens.begin() + b0 + T);
    KVCache cache = model->new_cache(T);
    std::vector<float> logits(size_t(T) * 48);
    model->forward(tok, cache, logits.data());
    want += cross_entropy(logits.data(), b.labels.data() + b0, T, 48);
    for (int t = 0; t < T; ++t) count += b.labels[size_t(b0 + t)] != kIgnoreLabel;
  }
  EXPECT_EQ(got.n_targets, count);
  // The two forwards differ only in float summation order inside the matrix products.
  EXPECT_NEAR(got.sum, want, 1e-5 * std::fabs(want));
  // forward_backward reports the same loss (its SIMD cross-entropy sums f32 exp lanes: ~1e-7 relative)
  EXPECT_NEAR(tr.forward_backward(b, 1.0f, 7).sum, got.sum, 1e-6 * std::fabs(got.sum));
}

// Directional derivative along a random direction u: (L(θ + εu) − L(θ − εu)) / 2ε against ∇L · u, and the
// same per parameter group (each adapter's A, B) through a few coordinates.
void check_gradients(LlamaModel& model, const LoraConfig& cfg, const char* what) {
  LoraSet lora(model, cfg);
  randomize(lora, 3);
  LlamaTrainer tr(model, lora);
  const TrainBatch b = small_batch(48, 2);
  const float scale = 1.0f / float(b.n_targets());
  tr.forward_backward(b, scale, 0);
  Flat f = flatten(lora);
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> u(f.value.size());
  double analytic = 0, gnorm = 0;
  for (size_t i = 0; i < u.size(); ++i) {
    u[i] = nd(rng);
    analytic += double(*f.grad[i]) * u[i];
    gnorm += double(*f.grad[i]) * *f.grad[i];
  }
  auto L = [&](double eps) {
    std::vector<float> saved(f.value.size());
    for (size_t i = 0; i < u.size(); ++i) saved[i] = *f.value[i], *f.value[i] += float(eps) * u[i];
    const double l = tr.loss(b).sum * scale;
    for (size_t i = 0; i < u.size(); ++i) *f.value[i] = saved[i];
    return l;
  };
  // ε: the loss is smooth at this scale (curvature terms ~ε² ≪ 1e-3 of the slope) while float rounding of
  // a loss of ~4 (~1e-6) over 2ε stays below 1e-3 of it.
  const double eps = 1e-3;
  const double numeric = (L(eps) - L(-eps)) / (2 * eps);
  EXPECT_NEAR(numeric, analytic, 2e-3 * std::sqrt(gnorm * double(u.size())) + 1e-3 * std::fabs(analytic))
      << what;
  // a few single coordinates with the largest gradients
  std::vector<size_t> idx(f.grad.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::partial_sort(idx.begin(), idx.begin() + 5, idx.end(),
                    [&](size_t a, size_t c) { return std::fabs(*f.grad[a]) > std::fabs(*f.grad[c]); });
  for (int j = 0; j < 5; ++j) {
    float* p = f.value[idx[size_t(j)]];
    const float p0 = *p;
    const float h = 2e-3f;  // the largest-gradient coordinates (often a β) curve: O(h²) must stay small
    *p = p0 + h;
    const double lp = tr.loss(b).sum * scale;
    *p = p0 - h;
    const double lm = tr.loss(b).sum * scale;
    *p = p0;
    const double g = *f.grad[idx[size_t(j)]];
    EXPECT_NEAR((lp - lm) / (2 * h), g, 5e-3 * std::fabs(g) + 1e-5) << what << " coordinate " << j;
  }
}

TEST(TrainLlama, GradientsMatchFiniteDifferencesDenseBase) {
  auto model = test::make_synth_model(small_spec());
  LoraConfig cfg;
  cfg.rank = 4;
  check_gradients(*model, cfg, "dense");
}

TEST(TrainLlama, GradientsMatchFiniteDifferencesWithIec) {
  auto model = test::make_synth_model(small_spec());
  LoraConfig cfg;
  cfg.rank = 4;
  cfg.iec = true;
  check_gradients(*model, cfg, "iec");
}

TEST(TrainLlama, GradientsMatchFiniteDifferencesPackedBase) {
  auto model = test::make_synth_model(small_spec());
  QuantSpec spec;
  spec.bits = 4;
  for (int l = 0; l < 2; ++l)
    for (LinearKind k : kAllLinears) {
      const Linear& w = model->linear(l, k);
      const std::vector<float> wf = linear_to_f32(w);
      model->set_linear(
          l, k, packed_linear(quantize_rtn(wf.data(), w.rows(), w.cols(), spec, Granularity::Group, 16)));
    }
  LoraConfig cfg;
  cfg.rank = 4;
  cfg.targets = {LinearKind::Q, LinearKind::V, LinearKind::Down};  // a subset, as users configure it
  check_gradients(*model, cfg, "packed w4g16");
}

TEST(TrainLlama, RecomputeChangesNothingAndRunsRepeat) {
  auto model = test::make_synth_model(small_spec());
  LoraConfig cfg;
  cfg.rank = 4;
  cfg.dropout = 0.1;
  auto grads = [&](bool recompute) {
    LoraSet lora(*model, cfg);
    randomize(lora, 5);
    LlamaTrainer tr(*model, lora, TrainerOptions{recompute});
    tr.forward_backward(small_batch(48, 3), 0.1f, 99);
    std::vector<float> g;
    for (float* p : flatten(lora).grad) g.push_back(*p);
    return g;
  };
  const auto a = grads(true), b = grads(false), c = grads(true);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
}

// Σ CE of the batch by the inference forward (each sequence on its own, KV cache and all).
double inference_loss(const LlamaModel& model, const TrainBatch& b, int V) {
  double sum = 0;
  for (size_t s = 0; s + 1 < b.starts.size(); ++s) {
    const int b0 = b.starts[s], T = b.starts[s + 1] - b0;
    std::vector<int32_t> tok(b.tokens.begin() + b0, b.tokens.begin() + b0 + T);
    KVCache cache = model.new_cache(T);
    std::vector<float> logits(size_t(T) * size_t(V));
    model.forward(tok, cache, logits.data());
    sum += cross_entropy(logits.data(), b.labels.data() + b0, T, V);
  }
  return sum;
}

TEST(TrainLlama, AttachedAndMergedAdaptersGiveTheTrainersLoss) {
  auto model = test::make_synth_model(small_spec());
  LoraConfig cfg;
  cfg.rank = 4;
  cfg.iec = true;
  LoraSet lora(*model, cfg);
  randomize(lora, 6);
  const TrainBatch b = small_batch(48, 4);
  const double with_adapters = LlamaTrainer(*model, lora).loss(b).sum;
  EXPECT_GT(std::fabs(with_adapters - inference_loss(*model, b, 48)), 1e-2);  // the adapters matter
  // attached: the inference forward with unmerged low-rank deltas
  auto attached = test::make_synth_model(small_spec());
  attach_adapters(*attached, lora);
  EXPECT_NEAR(inference_loss(*attached, b, 48), with_adapters, 1e-5 * std::fabs(with_adapters));
  // training on top of attached adapters is refused (the delta has no backward)
  EXPECT_THROW(LlamaTrainer(*attached, lora), Error);
  // merged: dense Ŵ + ΔW, then the trainer with no adapters
  merge_adapters(*model, lora);
  LoraConfig none = cfg;
  none.targets.clear();
  LoraSet empty(*model, none);
  EXPECT_NEAR(LlamaTrainer(*model, empty).loss(b).sum, with_adapters, 1e-5 * std::fabs(with_adapters));
}

TEST(TrainLlama, BadBatchesAndConfigsGiveClearErrors) {
  auto model = test::make_synth_model(small_spec());
  LoraConfig cfg;
  cfg.rank = 4;
  LoraSet lora(*model, cfg);
  LlamaTrainer tr(*model, lora);
  TrainBatch b = small_batch(48, 5);
  b.labels[0] = 48;
  EXPECT_THROW(tr.loss(b), Error);
  b = small_batch(48, 5);
  b.starts.back() -= 1;
  EXPECT_THROW(tr.loss(b), Error);
  LoraConfig iec = cfg;
  iec.iec = true;
  iec.rank = 5;  // divides neither 32 nor 64
  try {
    LoraSet bad(*model, iec);
    FAIL() << "IEC with a rank that does not divide the widths was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("IEC needs the LoRA rank to divide"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lowbit

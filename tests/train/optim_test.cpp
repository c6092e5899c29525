// AdamW, learning-rate schedules and gradient clipping (train/optim.h): trajectories against PyTorch
// (fixture adamw_ref.json from tools/ref_adamw.py), closed-form cases, and the optimiser state's round trip.
#include "train/optim.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "core/error.h"
#include "core/json.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace lowbit {
namespace {

using test::error_of;

std::vector<float> floats(const Json& j) {
  std::vector<float> v;
  for (const Json& x : j) v.push_back(float(x.get<double>()));
  return v;
}

// Parameters with their storage.
struct Params {
  std::vector<std::vector<float>> value, grad;
  std::vector<std::string> names;
  std::vector<ParamRef> refs() {
    std::vector<ParamRef> r;
    for (size_t i = 0; i < value.size(); ++i)
      r.push_back({names[i], value[i].data(), grad[i].data(), int64_t(value[i].size())});
    return r;
  }
};

float ulp(float x) {
  x = std::fabs(x);
  return std::nextafter(x, INFINITY) - x;
}

// Replays each case of the fixture: the same initial weights and raw gradients, the schedule's rate,
// clipping, then a step, comparing rate, norm and weights after every step and the moments at the end.
//
// Tolerance on a weight, derived: lowbit rounds the same f32 operations as torch except that torch may fuse
// m·β1 + (1-β1)·g into an FMA, sums the clipping norm in f32 (lowbit in double) and rounds the clip factor
// from an f32 division. Each of these perturbs the gradient or moments by a few f32 roundings (2^-24
// relative), so an update differs by at most a few times 2^-24 of its size (Adam is invariant to the
// gradient's scale, so a slightly different clip factor moves it even less), say 2^-18 of |Δw| + step size
// for margin; the weight may then round to the neighbouring float (one ulp). Errors add up over steps (weight
// decay only shrinks them).
TEST(AdamWReference, MatchesTorchTrajectories) {
  std::ifstream f(std::filesystem::path(__FILE__).parent_path() / "adamw_ref.json");
  ASSERT_TRUE(f) << "adamw_ref.json missing";
  const Json ref = Json::parse(f);
  for (const Json& c : ref["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    AdamWConfig cfg;
    cfg.lr = c["config"]["lr"];
    cfg.beta1 = c["config"]["beta1"];
    cfg.beta2 = c["config"]["beta2"];
    cfg.eps = c["config"]["eps"];
    cfg.weight_decay = c["config"]["weight_decay"];
    const bool cosine = c["schedule"]["kind"] == "cosine";
    const int64_t warmup = c["schedule"]["warmup_steps"], total = c["schedule"]["total_steps"];
    const double max_norm = c["max_norm"];
    Params p;
    for (const Json& q : c["params"]) {
      p.names.push_back(q["name"]);
      p.value.push_back(floats(q["init"]));
      p.grad.emplace_back(p.value.back().size());
    }
    AdamW opt(cfg);
    std::vector<std::vector<float>> tol(p.value.size());
    for (size_t i = 0; i < p.value.size(); ++i) tol[i].assign(p.value[i].size(), 0.f);
    double worst = 0;  // largest |error| / tolerance seen, to report how tight the bound is
    int64_t step = 0;
    for (const Json& s : c["steps"]) {
      const double factor =
          cosine ? cosine_with_warmup(step, warmup, total) : constant_with_warmup(step, warmup);
      const double lr = cfg.lr * factor;
      EXPECT_DOUBLE_EQ(lr, s["lr"].get<double>()) << step;
      for (size_t i = 0; i < p.value.size(); ++i) p.grad[i] = floats(s["grads"][i]);
      auto refs = p.refs();
      const double norm = clip_grad_norm(refs, max_norm);
      EXPECT_NEAR(norm, s["norm"].get<double>(), 1e-6 * norm) << step;
      const std::vector<std::vector<float>> before = p.value;
      opt.step(refs, lr);
      ++step;
      const double step_size = lr / (1 - std::pow(cfg.beta1, double(step)));
      for (size_t i = 0; i < p.value.size(); ++i) {
        const std::vector<float> want = floats(s["params"][i]);
        for (size_t j = 0; j < want.size(); ++j) {
          tol[i][j] += ulp(want[j]) + float((std::fabs(want[j] - before[i][j]) + step_size) * 0x1p-18);
          const double err = std::fabs(double(p.value[i][j]) - want[j]);
          ASSERT_LE(err, tol[i][j]) << "step " << step << " param " << i << " [" << j << "] " << p.value[i][j]
                                    << " vs " << want[j];
          worst = std::max(worst, err / tol[i][j]);
        }
      }
    }
    EXPECT_EQ(opt.steps(), step);
    for (size_t i = 0; i < p.value.size(); ++i) {
      const std::vector<float> m = floats(c["final_exp_avg"][i]), v = floats(c["final_exp_avg_sq"][i]);
      const auto got_m = opt.exp_avg(p.names[i]), got_v = opt.exp_avg_sq(p.names[i]);
      ASSERT_EQ(got_m.size(), m.size());
      for (size_t j = 0; j < m.size(); ++j) {
        // v sums positive terms: a few f32 roundings per step, relative. m sums terms of either sign, each at
        // most (1-β1)·|g| <= |g| <= sqrt(v / ((1-β2)·β2^steps)), and may cancel to far below them (the
        // clipped gradients differ from torch's by ~2^-23): a few roundings per step of the largest term,
        // absolute.
        const double g_max = std::sqrt(v[j] / ((1 - cfg.beta2) * std::pow(cfg.beta2, double(step))));
        EXPECT_NEAR(got_m[j], m[j], 1e-5 * std::fabs(m[j]) + 4 * double(step) * 0x1p-24 * g_max)
            << i << " " << j;
        EXPECT_NEAR(got_v[j], v[j], 1e-5 * v[j]) << i << " " << j;
      }
    }
    std::printf("[          ] %s: largest weight error %.3f of its tolerance\n",
                c["name"].get<std::string>().c_str(), worst);
  }
}

TEST(AdamWClosedForm, FirstStepMovesEachWeightByLr) {
  // Without decay the first step's bias corrections make m̂ = g and v̂ = g², so Δw = -lr·g / (|g| + eps).
  std::vector<float> w{0.5f, -1.f, 2.f, 3.f}, g{1e-2f, -3.f, 40.f, 0.f};
  AdamW opt({.lr = 1e-3});
  std::vector<ParamRef> refs{{"w", w.data(), g.data(), 4}};
  opt.step(refs, 1e-3);
  EXPECT_NEAR(w[0], 0.5f - 1e-3f, 2e-7);
  EXPECT_NEAR(w[1], -1.f + 1e-3f, 2e-7);
  EXPECT_NEAR(w[2], 2.f - 1e-3f, 3e-7);
  EXPECT_EQ(w[3], 3.f);  // zero gradient: 0 / (0 + eps)
}

TEST(AdamWClosedForm, WeightDecayIsDecoupled) {
  // Zero gradients: the moments stay zero and only the decay acts, w ← w · f32(1 - lr·wd).
  std::vector<float> w{1.f, -2.f, 0.25f}, g(3, 0.f);
  AdamW opt({.lr = 0.1, .weight_decay = 0.5});
  std::vector<ParamRef> refs{{"w", w.data(), g.data(), 3}};
  opt.step(refs, 0.1);
  const float d = float(1 - 0.1 * 0.5);
  EXPECT_EQ(w[0], 1.f * d);
  EXPECT_EQ(w[1], -2.f * d);
  EXPECT_EQ(w[2], 0.25f * d);
}

TEST(AdamWClosedForm, StepRejectsAnotherParameterList) {
  std::vector<float> a(3), b(4), ga(3), gb(4);
  AdamW opt;
  std::vector<ParamRef> one{{"a", a.data(), ga.data(), 3}};
  opt.step(one, 1e-3);
  std::vector<ParamRef> two{{"a", a.data(), ga.data(), 3}, {"b", b.data(), gb.data(), 4}};
  EXPECT_NE(error_of([&] { opt.step(two, 1e-3); }).find("2 parameters given, the optimiser holds 1"),
            std::string::npos);
  std::vector<ParamRef> renamed{{"x", a.data(), ga.data(), 3}};
  EXPECT_NE(error_of([&] { opt.step(renamed, 1e-3); }).find("parameter 0 is x"), std::string::npos);
}

TEST(OptimSchedule, TransformersValuesAtKnownSteps) {
  EXPECT_EQ(constant_with_warmup(0, 300), 0.0);  // the first update runs at rate 0
  EXPECT_EQ(constant_with_warmup(150, 300), 0.5);
  EXPECT_EQ(constant_with_warmup(299, 300), 299.0 / 300);
  EXPECT_EQ(constant_with_warmup(300, 300), 1.0);
  EXPECT_EQ(constant_with_warmup(0, 0), 1.0);
  EXPECT_EQ(cosine_with_warmup(5, 10, 110), 0.5);
  EXPECT_EQ(cosine_with_warmup(10, 10, 110), 1.0);
  EXPECT_NEAR(cosine_with_warmup(60, 10, 110), 0.5, 1e-15);  // half way through the decay
  EXPECT_NEAR(cosine_with_warmup(35, 10, 110), 0.5 * (1 + std::cos(M_PI / 4)), 1e-15);
  EXPECT_EQ(cosine_with_warmup(110, 10, 110), 0.0);
  EXPECT_NEAR(cosine_with_warmup(210, 10, 110), 1.0,
              1e-15);                                    // transformers does not hold it at 0 after the end
  EXPECT_EQ(warmup_steps_from_ratio(10000, 0.03), 300);  // qlora's recipe
  EXPECT_EQ(warmup_steps_from_ratio(1875, 0.03), 57);    // ceil(56.25)
  EXPECT_EQ(warmup_steps_from_ratio(100, 0.0), 0);
}

TEST(OptimClip, ScalesOnlyAboveMaxNorm) {
  std::vector<float> a{3.f, 0.f}, b{4.f}, w(3);
  std::vector<ParamRef> refs{{"a", w.data(), a.data(), 2}, {"b", w.data(), b.data(), 1}};
  EXPECT_EQ(clip_grad_norm(refs, 10.0), 5.0);
  EXPECT_EQ(a[0], 3.f);
  EXPECT_EQ(b[0], 4.f);
  EXPECT_EQ(clip_grad_norm(refs, 5.0), 5.0);  // 5 / (5 + 1e-6) < 1: scaled by a hair, as torch does
  EXPECT_LT(a[0], 3.f);
  EXPECT_EQ(clip_grad_norm(refs, 1.0), std::sqrt(double(a[0]) * a[0] + double(b[0]) * b[0]));
  EXPECT_NEAR(a[0], 0.6f, 1e-6);
  EXPECT_NEAR(b[0], 0.8f, 1e-6);
  std::vector<float> bad{NAN, 1.f};
  std::vector<ParamRef> nan_ref{{"n", w.data(), bad.data(), 2}};
  EXPECT_TRUE(std::isnan(clip_grad_norm(nan_ref, 1.0)));
  EXPECT_EQ(bad[1], 1.f);
}

TEST(OptimClip, NormOfALargeGradientIsExactToDouble) {
  std::vector<float> g(300001), w(1);
  long double want = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    g[i] = float(int(i * 2654435761u % 2001) - 1000) / 1024.f;
    want += (long double)g[i] * g[i];
  }
  std::vector<ParamRef> refs{{"g", w.data(), g.data(), int64_t(g.size())}};
  EXPECT_NEAR(clip_grad_norm(refs, 1e30), double(std::sqrt(want)), 1e-12 * double(std::sqrt(want)));
}

struct Trained {
  Params p;
  AdamW opt{{.lr = 1e-2, .weight_decay = 0.1}};
  Trained() {
    p.names = {"layers.0.q.lora_A", "layers.0.q.lora_B"};
    p.value = {std::vector<float>(7), std::vector<float>(5)};
    p.grad = p.value;
    for (size_t i = 0; i < 2; ++i)
      for (size_t j = 0; j < p.value[i].size(); ++j) p.value[i][j] = float(j) * 0.25f - float(i);
  }
  void steps(int n) {
    for (int k = 0; k < n; ++k) {
      for (size_t i = 0; i < 2; ++i)
        for (size_t j = 0; j < p.grad[i].size(); ++j)
          p.grad[i][j] = std::sin(float(opt.steps() * 31 + i * 7 + j)) * (1.f + float(opt.steps()));
      opt.step(p.refs(), 1e-2);
    }
  }
};

TEST(AdamWState, SaveLoadResumesBitExactly) {
  const std::string dir = test::temp_dir("adamw");
  Trained whole;
  whole.steps(5);
  Trained first;
  first.steps(3);
  first.opt.save(dir + "/optim.safetensors");
  Trained resumed;
  resumed.p.value = first.p.value;  // the weights come from the model checkpoint
  resumed.opt.load(dir + "/optim.safetensors", resumed.p.refs());
  EXPECT_EQ(resumed.opt.steps(), 3);
  resumed.steps(2);
  EXPECT_EQ(resumed.p.value, whole.p.value);
  for (const std::string& n : whole.p.names) {
    EXPECT_TRUE(std::equal(resumed.opt.exp_avg(n).begin(), resumed.opt.exp_avg(n).end(),
                           whole.opt.exp_avg(n).begin()));
    EXPECT_TRUE(std::equal(resumed.opt.exp_avg_sq(n).begin(), resumed.opt.exp_avg_sq(n).end(),
                           whole.opt.exp_avg_sq(n).begin()));
  }
  // A state saved before any step loads as a fresh optimiser.
  Trained fresh;
  fresh.opt.save(dir + "/fresh.safetensors");
  Trained again;
  again.opt.load(dir + "/fresh.safetensors", again.p.refs());
  again.steps(5);
  EXPECT_EQ(again.p.value, whole.p.value);
}

TEST(AdamWState, LoadRejectsStateOfOtherParameters) {
  const std::string dir = test::temp_dir("adamw");
  const std::string path = dir + "/optim.safetensors";
  Trained t;
  t.steps(2);
  t.opt.save(path);
  auto load_with = [&](std::vector<ParamRef> refs) { return error_of([&] { AdamW().load(path, refs); }); };
  auto refs = t.p.refs();
  std::vector<float> extra(3), extra_g(3);
  auto more = refs;
  more.push_back({"layers.0.v.lora_A", extra.data(), extra_g.data(), 3});
  EXPECT_EQ(load_with(more),
            path + ": no tensor 'exp_avg.layers.0.v.lora_A' for parameter layers.0.v.lora_A");
  EXPECT_EQ(load_with({refs[0]}),
            path + ": tensor 'exp_avg.layers.0.q.lora_B' belongs to no parameter being trained");
  auto resized = refs;
  resized[1].size = 4;
  EXPECT_EQ(load_with(resized), path + ": tensor 'exp_avg.layers.0.q.lora_B' is F32 (5), expected F32 (4)");

  // Not an optimiser state: a safetensors file without the metadata, and a file that is not safetensors.
  const std::vector<float> x(5);
  TensorView v;
  v.shape = {5};
  v.data = x.data();
  v.nbytes = 20;
  write_safetensors(dir + "/model.safetensors", {{"w", v}}, {{"format", "pt"}});
  EXPECT_EQ(error_of([&] { AdamW().load(dir + "/model.safetensors", refs); }),
            dir + "/model.safetensors: not a lowbit AdamW state (format 'pt')");
  test::write_bytes(dir + "/junk", "not a file of tensors");
  EXPECT_NE(error_of([&] { AdamW().load(dir + "/junk", refs); }).find(dir + "/junk"), std::string::npos);
}

}  // namespace
}  // namespace lowbit

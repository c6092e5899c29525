#include "train/optim.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <numbers>

#include "core/error.h"
#include "io/safetensors.h"

namespace lowbit {

namespace {

// Element loops parallelise only above this size: an OpenMP region costs more than a small LoRA matrix.
constexpr int64_t kParallelMin = 1 << 16;

}  // namespace

void AdamW::step(std::span<const ParamRef> params, double lr) {
  if (steps_ == 0 && state_.empty()) {
    for (const ParamRef& p : params)
      state_.push_back({p.name, std::vector<float>(size_t(p.size)), std::vector<float>(size_t(p.size))});
  }
  if (params.size() != state_.size())
    fail("AdamW: {} parameters given, the optimiser holds {}", params.size(), state_.size());
  for (size_t i = 0; i < params.size(); ++i)
    if (params[i].name != state_[i].name || size_t(params[i].size) != state_[i].m.size())
      fail("AdamW: parameter {} is {} ({} values), the optimiser holds {} ({} values)", i, params[i].name,
           params[i].size, state_[i].name, state_[i].m.size());
  ++steps_;
  // The scalars as _single_tensor_adamw computes them (Python floats), each rounded to f32 where torch hands
  // it to a float32 kernel.
  const double t = double(steps_);
  const double bias1 = 1 - std::pow(cfg_.beta1, t), bias2 = 1 - std::pow(cfg_.beta2, t);
  const float decay = float(1 - lr * cfg_.weight_decay);
  const float b1 = float(cfg_.beta1), c1 = float(1 - cfg_.beta1);
  const float b2 = float(cfg_.beta2), c2 = float(1 - cfg_.beta2);
  const float bias2_sqrt = float(std::sqrt(bias2)), eps = float(cfg_.eps);
  const float neg_step_size = float(-(lr / bias1));
  for (size_t i = 0; i < params.size(); ++i) {
    float* w = params[i].value;
    const float* g = params[i].grad;
    float* m = state_[i].m.data();
    float* v = state_[i].v.data();
    const int64_t n = params[i].size;
#pragma omp parallel for if (n >= kParallelMin)
    for (int64_t j = 0; j < n; ++j) {
      const float gj = g[j];
      const float wj = w[j] * decay;
      m[j] = m[j] * b1 + c1 * gj;
      v[j] = v[j] * b2 + c2 * gj * gj;
      const float denom = std::sqrt(v[j]) / bias2_sqrt + eps;
      w[j] = wj + neg_step_size * m[j] / denom;
    }
  }
}

const AdamW::Moments& AdamW::moments(const std::string& name) const {
  for (const Moments& s : state_)
    if (s.name == name) return s;
  static const Moments none;
  return none;
}

std::span<const float> AdamW::exp_avg(const std::string& name) const {
  return moments(name).m;
}
std::span<const float> AdamW::exp_avg_sq(const std::string& name) const {
  return moments(name).v;
}

void AdamW::save(const std::string& path) const {
  std::map<std::string, TensorView> tensors;
  auto view = [](const std::vector<float>& x) {
    TensorView t;
    t.dtype = DType::F32;
    t.shape = {int64_t(x.size())};
    t.data = x.data();
    t.nbytes = x.size() * sizeof(float);
    return t;
  };
  for (const Moments& s : state_) {
    tensors["exp_avg." + s.name] = view(s.m);
    tensors["exp_avg_sq." + s.name] = view(s.v);
  }
  write_safetensors(path, tensors,
                    {{"format", "lowbit-adamw"},
                     {"step", std::to_string(steps_)},
                     {"beta1", fmt::format("{}", cfg_.beta1)},
                     {"beta2", fmt::format("{}", cfg_.beta2)},
                     {"eps", fmt::format("{}", cfg_.eps)},
                     {"weight_decay", fmt::format("{}", cfg_.weight_decay)}});
}

void AdamW::load(const std::string& path, std::span<const ParamRef> params) {
  const SafetensorsFile f = load_safetensors(path);
  auto meta = [&](const char* key) -> const std::string& {
    auto it = f.metadata.find(key);
    if (it == f.metadata.end()) fail("{}: not a lowbit AdamW state (no '{}' in its metadata)", path, key);
    return it->second;
  };
  if (meta("format") != "lowbit-adamw")
    fail("{}: not a lowbit AdamW state (format '{}')", path, meta("format"));
  const std::string& step_text = meta("step");
  int64_t steps = -1;
  auto [end, ec] = std::from_chars(step_text.data(), step_text.data() + step_text.size(), steps);
  if (ec != std::errc() || end != step_text.data() + step_text.size() || steps < 0)
    fail("{}: step '{}' is not a count", path, step_text);

  std::vector<Moments> state;
  if (steps > 0) {  // before the first step there are no moments (they start at zero on it)
    for (const ParamRef& p : params) {
      Moments s{p.name, {}, {}};
      for (auto [prefix, out] : {std::pair{"exp_avg.", &s.m}, std::pair{"exp_avg_sq.", &s.v}}) {
        const std::string key = prefix + p.name;
        auto it = f.tensors.find(key);
        if (it == f.tensors.end()) fail("{}: no tensor '{}' for parameter {}", path, key, p.name);
        const TensorView& t = it->second;
        if (t.dtype != DType::F32 || t.numel() != p.size)
          fail("{}: tensor '{}' is {} {}, expected F32 ({})", path, key, dtype_name(t.dtype),
               shape_str(t.shape), p.size);
        out->resize(size_t(p.size));
        std::memcpy(out->data(), t.data, t.nbytes);  // memcpy: safetensors data need not be 4-byte aligned
      }
      state.push_back(std::move(s));
    }
  }
  if (f.tensors.size() != 2 * state.size()) {
    for (const auto& [key, t] : f.tensors) {
      const size_t dot = key.find('.');
      const std::string name = dot == std::string::npos ? key : key.substr(dot + 1);
      bool known = false;
      for (const Moments& s : state) known = known || s.name == name;
      if (!known) fail("{}: tensor '{}' belongs to no parameter being trained", path, key);
    }
  }
  steps_ = steps;
  state_ = std::move(state);
}

double constant_with_warmup(int64_t step, int64_t warmup_steps) {
  if (step < warmup_steps) return double(step) / double(std::max<int64_t>(1, warmup_steps));
  return 1.0;
}

double cosine_with_warmup(int64_t step, int64_t warmup_steps, int64_t total_steps, double num_cycles) {
  if (step < warmup_steps) return double(step) / double(std::max<int64_t>(1, warmup_steps));
  const double progress =
      double(step - warmup_steps) / double(std::max<int64_t>(1, total_steps - warmup_steps));
  return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * num_cycles * 2.0 * progress)));
}

int64_t warmup_steps_from_ratio(int64_t total_steps, double warmup_ratio) {
  return int64_t(std::ceil(double(total_steps) * warmup_ratio));
}

double clip_grad_norm(std::span<const ParamRef> params, double max_norm) {
  // Sums of squares over fixed chunks, added in chunk order: the same norm whatever the thread count.
  constexpr int64_t kChunk = 1 << 16;
  double total = 0;
  for (const ParamRef& p : params) {
    const int64_t chunks = (p.size + kChunk - 1) / kChunk;
    std::vector<double> partial(size_t(chunks), 0.0);
#pragma omp parallel for if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      double s = 0;
      for (int64_t j = c * kChunk; j < std::min(p.size, (c + 1) * kChunk); ++j)
        s += double(p.grad[j]) * p.grad[j];
      partial[size_t(c)] = s;
    }
    for (double s : partial) total += s;
  }
  const double norm = std::sqrt(total);
  if (!std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1) {
    const float f = float(coef);
    for (const ParamRef& p : params) {
#pragma omp parallel for if (p.size >= kParallelMin)
      for (int64_t j = 0; j < p.size; ++j) p.grad[j] *= f;
    }
  }
  return norm;
}

}  // namespace lowbit

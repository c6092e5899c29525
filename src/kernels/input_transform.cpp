#include "kernels/input_transform.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/sys.h"

namespace lowbit {

ChannelScale::ChannelScale(std::vector<float> s) : inv_(std::move(s)) {
  for (size_t j = 0; j < inv_.size(); ++j) {
    if (!(inv_[j] > 0) || !std::isfinite(inv_[j]))
      fail("channel scale s[{}] = {} must be finite and positive", j, inv_[j]);
    inv_[j] = 1.0f / inv_[j];
  }
}

void ChannelScale::apply(const float* x, int64_t n, int64_t cols, float* out) const {
  if (size_t(cols) != inv_.size())
    fail("channel scale of {} channels applied to {} columns", inv_.size(), cols);
#pragma omp parallel for schedule(static) if (n * cols > (int64_t(1) << 16))
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < cols; ++j) out[t * cols + j] = x[t * cols + j] * inv_[size_t(j)];
}

PerTokenQuant::PerTokenQuant(int bits) : bits_(bits) {
  if (bits < 2 || bits > 8) fail("per-token activation quantization: {} bits is not supported (2..8)", bits);
}

void PerTokenQuant::apply(const float* x, int64_t n, int64_t cols, float* out) const {
  const float qmax = float((1 << (bits_ - 1)) - 1);
#pragma omp parallel for schedule(static) if (n * cols > (int64_t(1) << 16))
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * cols;
    float m = 0;
    for (int64_t j = 0; j < cols; ++j) m = std::max(m, std::fabs(xr[j]));
    const float delta = std::max(m, 1e-5f) / qmax;  // torch: scales.clamp_(min=1e-5).div_(q_max)
    float* o = out + t * cols;
    for (int64_t j = 0; j < cols; ++j) o[j] = std::nearbyint(xr[j] / delta) * delta;
  }
}

TransformChain::TransformChain(std::vector<std::shared_ptr<const InputTransform>> steps)
    : steps_(std::move(steps)) {
  for (const auto& s : steps_)
    if (!s) fail("transform chain: a null step");
}

std::string TransformChain::name() const {
  std::string n;
  for (const auto& s : steps_) n += (n.empty() ? "" : "+") + s->name();
  return n;
}

void TransformChain::apply(const float* x, int64_t n, int64_t cols, float* out) const {
  if (steps_.empty()) {
    std::copy_n(x, size_t(n * cols), out);
    return;
  }
  UninitVector<float> tmp(steps_.size() > 1 ? size_t(n * cols) : 0);
  const float* in = x;
  for (size_t i = 0; i < steps_.size(); ++i) {
    // Alternate so the last step writes `out`.
    float* dst = (steps_.size() - 1 - i) % 2 == 0 ? out : tmp.data();
    steps_[i]->apply(in, n, cols, dst);
    in = dst;
  }
}

}  // namespace lowbit

// The activation hook of a linear layer: an optional transform of its input x (n, cols) applied before the
// product, so that a method can smooth (scale the input's channels), rotate or quantize a linear's input at
// inference without touching the model code (model/ calls ops::linear only). The model owns nothing of it:
// a method sets Linear::input.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lowbit {

class InputTransform {
 public:
  virtual ~InputTransform() = default;
  virtual std::string name() const = 0;  // for reports and errors: "channel_scale", "per_token_a8"
  // out (n, cols) = T(x (n, cols)); out does not alias x.
  virtual void apply(const float* x, int64_t n, int64_t cols, float* out) const = 0;
};

// x · diag(1 / s): SmoothQuant's migration of activation outliers into the weights (Xiao et al. 2023, eq. 3,
// X̂ = X diag(s)⁻¹ with Ŵ = diag(s) W) where no preceding op absorbs 1/s.
class ChannelScale final : public InputTransform {
 public:
  explicit ChannelScale(std::vector<float> s);  // s (cols), every entry finite and > 0
  std::string name() const override { return "channel_scale"; }
  void apply(const float* x, int64_t n, int64_t cols, float* out) const override;

 private:
  std::vector<float> inv_;  // 1 / s, as SmoothQuant's smooth_lm computes it (one division per channel)
};

// Symmetric per-token fake quantization to `bits` (2..8), SmoothQuant's fake_quant.py
// quantize_activation_per_token_absmax: Δ_t = max(max_i |x_ti|, 1e-5) / (2^(bits−1) − 1),
// x̂_ti = round(x_ti / Δ_t) · Δ_t, round half to even (torch.round). Simulated in float; integer kernels
// (VNNI/AMX) are the activation-quantization issue's.
class PerTokenQuant final : public InputTransform {
 public:
  explicit PerTokenQuant(int bits);
  std::string name() const override { return "per_token_a" + std::to_string(bits_); }
  void apply(const float* x, int64_t n, int64_t cols, float* out) const override;
  int bits() const { return bits_; }

 private:
  int bits_;
};

// Transforms applied in order (e.g. smoothing, then per-token quantization).
class TransformChain final : public InputTransform {
 public:
  explicit TransformChain(std::vector<std::shared_ptr<const InputTransform>> steps);
  std::string name() const override;
  void apply(const float* x, int64_t n, int64_t cols, float* out) const override;

 private:
  std::vector<std::shared_ptr<const InputTransform>> steps_;
};

}  // namespace lowbit

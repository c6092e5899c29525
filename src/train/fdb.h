// Flexible Dual Binarization as a trainable layer (DB-LLM, Chen et al. 2024, §3.2): one block linear's
// latent weights W and, per (row, group of g columns), two scales α1, α2. The weight the model computes with
// is
//     Ŵ = α1·b1 + α2·b2,   b1 = H(σ1·(W − (α1 + α2)/2)),   b2 = H(σ2·(W − α1·b1 − α2/2))      (paper eq. 6–7)
// with H the Heaviside step (H(0) = 1) and σ = sign(α) (the paper writes the case α1 > 0 > α2 of its
// initialisation, where σ1 = 1 and σ2 = −1; the signs make the same nearest-level choice for the other
// three initial sign patterns, see formats/dualbin.h). Training is quantization-aware with the
// straight-through estimator: ∂L/∂W = ∂L/∂Ŵ (the planes pass the gradient through unchanged) and
// ∂L/∂α_k = Σ_group ∂L/∂Ŵ · b_k (the planes are constants of α's gradient).
//
// The initial state is 2-bit round-to-nearest exactly (DB-LLM initialises from 2-bit uniform quantization):
// the planes and scales of dualbin_from_affine(RTN w2) and W = the original weight. The planes are
// re-derived from (W, α) by the rule above only after each optimiser update (refresh()), so the first
// forward is the RTN model bit for bit, whatever the rule does on the f32 ties of RTN's half-to-even
// rounding.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "formats/dualbin.h"

namespace lowbit {

class FdbLinear {
 public:
  // From the layer's weight w (rows, cols) in f32: RTN at 2 bits, asymmetric, groups of `group` columns.
  FdbLinear(const std::vector<float>& w, int64_t rows, int64_t cols, int64_t group);

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t group() const { return group_; }
  int64_t n_groups() const { return cols_ / group_; }

  // Ŵ (rows, cols) from the current planes and scales, in f32: (b1 ? α1 : 0) + (b2 ? α2 : 0), the dualbin
  // reference dequantizer's arithmetic.
  void weight(float* w_hat) const;
  // From ∂L/∂Ŵ (rows, cols): adds ∂L/∂W and ∂L/∂α1, ∂L/∂α2 to the gradient buffers.
  void backward(const float* d_w_hat);
  // Re-derives the planes from the updated W and α (after an optimiser step).
  void refresh();
  // The packed weight: the current planes, α rounded to fp16 (exact for the initial state, whose scales
  // come from fp16 ones).
  std::shared_ptr<DualBinWeight> pack() const;

  // Trainable parameters and their gradients (the optimiser's view).
  std::vector<float> latent, alpha1, alpha2;        // (rows, cols), (rows, n_groups) ×2
  std::vector<float> d_latent, d_alpha1, d_alpha2;  // same shapes
  std::vector<uint8_t> b1, b2;                      // (rows, cols) current planes, 0/1

 private:
  int64_t rows_, cols_, group_;
};

}  // namespace lowbit

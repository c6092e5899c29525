// Affine (uniform) weight quantization, the primitive under RTN, GPTQ and AWQ.
//
//   x_q = clamp(round(x / S) + Z, 0, maxq),   x̂ = S · (x_q − Z),   maxq = 2^b − 1,
//
// with round = round-half-to-even (torch.round / std::nearbyint). Note round(x/S) + Z, not round(x/S + Z):
// the two differ on ties (round(2.5) + 1 = 3, round(3.5) = 4), and GPTQ's quantize() does the former.
//
// Range convention (GPTQ, Frantar et al. 2022, reference code `Quantizer.find_params`):
//   xmin = min(min x, 0), xmax = max(max x, 0)   (the grid always represents 0 exactly)
//   sym: xmax = max(|xmin|, xmax), xmin = −xmax
//        (GPTQ's code keeps xmin = 0 when every value is ≥ 0, clipping half the range; we always use the
//        symmetric range, as the issue states; only all-non-negative groups differ)
//   xmin == xmax (all zero)  →  xmin = −1, xmax = +1
//   S = (xmax − xmin) / maxq;  Z = round(−xmin / S) (asym) or (maxq + 1) / 2 (sym)
// MSE search (GPTQ's `mse` option): for p = 1 − i/grid, i = 0 .. maxshrink·grid − 1, the range (p·xmin,
// p·xmax) gives (S, Z); keep the one with the smallest Σ|x̂ − x|^norm (grid 100, maxshrink 0.8, norm 2.4).
//
// fp16 scales: the packed format stores S as fp16, so S is rounded to fp16 FIRST and the codes and x̂ are
// computed with that rounded S. The fake-quant value S16·(q − Z) is then bit-identical to what the packed
// weight dequantizes to (kernels/affine_matmul.h computes the same float expression), GPTQ's error feedback
// sees the weight the model will really use, and the MSE search scores the scale that is stored. Z is
// round(−xmin / S) with the fp32 S, exactly GPTQ's zero-point (Z is an integer either way; −xmin/S ≤ maxq so
// it stays in range). A scale that underflows fp16 is raised to the smallest fp16 subnormal (2⁻²⁴); one that
// overflows is an error.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "formats/affine.h"

namespace lowbit {

struct QuantSpec {
  int bits = 4;  // 2..8
  bool sym = false;
  bool mse = false;  // GPTQ's MSE shrink search instead of plain min/max
  int mse_grid = 100;
  double mse_maxshrink = 0.8;
  double mse_norm = 2.4;
  int maxq() const { return (1 << bits) - 1; }
};

struct AffineParams {
  float scale = 1;         // f16_to_f32(scale_f16): the scale the codes are computed with
  uint16_t scale_f16 = 0;  // as stored
  uint8_t zero = 0;        // Z
};

// The range [min(x, 0), max(x, 0)] of x[0..n) (n ≥ 1), (−1, 1) when every value is 0: GPTQ's convention, also
// PB-LLM's salient grid and SliM-LLM's group grids.
void zero_inclusive_range(const float* x, int64_t n, float* lo, float* hi);
// GPTQ's dead-column fix: where H_ii = 0 (an input channel that was always 0), H_ii = 1 and W's column = 0.
// H (cols, cols), W (rows, cols). Returns the number of such columns.
int64_t fix_dead_columns(std::vector<float>& H, float* W, int64_t rows, int64_t cols);

// (S, Z) of the values x[0..n) (n ≥ 1) under the convention above.
AffineParams find_params(const float* x, int64_t n, const QuantSpec& spec);
// (S, Z) of an already-adjusted range (xmin ≤ 0 ≤ xmax, xmin < xmax).
AffineParams params_for_range(float xmin, float xmax, const QuantSpec& spec);

inline uint32_t quantize_value(float x, const AffineParams& p, int maxq) {
  const float q = std::nearbyint(x / p.scale) + float(p.zero);  // default FE_TONEAREST: half to even
  return uint32_t(std::clamp(q, 0.0f, float(maxq)));
}
// The exact float expression of affine_dequantize_rows_scalar, so fake-quant == packed.
inline float dequantize_value(uint32_t q, const AffineParams& p) {
  return p.scale * (float(q) - float(p.zero));
}
inline float fake_quantize_value(float x, const AffineParams& p, int maxq) {
  return dequantize_value(quantize_value(x, p, maxq), p);
}

// An owned AffineWeight being filled in: codes, scales and zero-points (and g_idx when act-order permuted
// the groups). Different rows may be written from different threads.
class PackedBuilder {
 public:
  PackedBuilder(int bits, int64_t rows, int64_t cols, int64_t group_size, bool with_g_idx);
  void set_params(int64_t row, int64_t group, const AffineParams& p);
  void set_code(int64_t row, int64_t col, uint32_t q) { pack_code(codes_ + row * row_bytes_, bits_, col, q); }
  int32_t* g_idx();                              // (cols), only when with_g_idx
  std::shared_ptr<const AffineWeight> finish();  // once

 private:
  struct Storage;
  std::shared_ptr<Storage> st_;
  AffineWeight w_;
  uint8_t* codes_;
  int bits_;
  int64_t row_bytes_;
};

// Whether a loop doing about `flops` arithmetic is worth an OpenMP region.
inline bool worth_parallel(double flops) {
  return flops > 2e5;
}

// GPTQ's inverse-Hessian factor, in place: H (n, n) row-major symmetric (dead columns already fixed) gets
// λ = damp · mean(diag H) on its diagonal, and its row-major upper triangle then holds U with
// (H + λI)⁻¹ = UᵀU (the reference's cholesky(cholesky_inverse(cholesky(H)), upper=True)). When H + λI is not
// (numerically) positive definite, damp is multiplied by 10 and the factorization retried, at most
// max_retries times; then a one-line error naming `name`. Returns the relative dampening used.
double hessian_inverse_factor(std::vector<float>& H, int64_t n, double damp, int max_retries,
                              std::string_view name);

// torch.linspace(start, end, steps) in float32 as PyTorch's CPU kernel makes it, bit for bit (upstream
// search grids: BiLLM's split quantiles, SliM-LLM's scale factors): step = (end − start)/(steps − 1) in
// float; the first half counts up from start, the second down from end; its vectorized loop (8 float lanes)
// takes each 8-lane chunk's base that way and adds step·i per lane, which rounds differently from the
// per-element formula (18 of BiLLM's 81 values).
std::vector<float> torch_linspace_f32(float start, float end, int steps);

// Checks every value is finite; throws "<name> contains NaN at (r, c)" (or Inf).
void check_finite(const float* w, int64_t rows, int64_t cols, std::string_view name);
// Validates bits / group against a (rows, cols) weight; group_size kPerChannel means per channel.
void check_quant_shape(int bits, int64_t group_size, int64_t cols, std::string_view name);

}  // namespace lowbit

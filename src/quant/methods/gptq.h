// GPTQ (Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers", Algorithm 1): quantizes W column by column in a fixed order, after each column
// spreading its quantization error over the not-yet-quantized columns through the inverse Hessian of the
// layer's squared-error objective ‖WX − ŴX‖², H = 2XXᵀ (eq. 1-3). Matches the authors' `fasterquant`:
//  * dampening λ = damp · mean(diag H) added to the diagonal (§4 "Step 3", default 1%);
//  * dead columns (H_ii = 0: the input is always zero) get H_ii = 1 and W[:, i] = 0;
//  * the rows of the upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU) replace the shrinking inverses of eq. 3;
//  * lazy batch updates (§4 "Step 2"): errors inside a block of 128 columns update that block at once, the
//    rest of W once per block with one GEMM;
//  * act-order (`--act-order`, "desc_act"): columns processed by decreasing H_ii; with groups, group g holds
//    the g-th run of group_size columns in that order and g_idx maps each column to its group;
//  * static groups: group parameters fixed from the original W (natural column groups) before any update, so
//    act-order needs no g_idx;
//  * per-channel (group_size 0): one (S, Z) per row, from W before dead-column zeroing, as the reference.
// Group parameters are computed when the first column of the group is reached, from W as updated by all
// previous blocks (the reference reads W, not the in-block copy W1; identical when group_size == block size).
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "formats/affine.h"
#include "quant/method.h"
#include "quant/primitives.h"

namespace lowbit {

struct GptqOptions {
  QuantSpec spec;
  int64_t group_size = kPerChannel;  // input columns per (S, Z), or kPerChannel
  bool act_order = false;
  bool static_groups = false;
  double damp = 0.01;  // relative dampening (percdamp)
  int block_size = 128;
  // Non-positive-definite fallback: when the Cholesky factorization of H + λI or the inversion fails, λ is
  // multiplied by 10 and the factorization retried, at most this many times; then it is an error.
  int max_damp_retries = 3;
};

struct GptqResult {
  std::shared_ptr<const AffineWeight> weight;
  double loss = 0;       // the reference's reported error: Σ (w − ŵ)² / U_ii² / 2
  double damp_used = 0;  // relative dampening that factorized
  int dead_columns = 0;
};

// W: (rows, cols) row-major; H: (cols, cols) symmetric (consumed). name labels errors.
GptqResult gptq_quantize(const float* w, int64_t rows, int64_t cols, std::vector<float> H,
                         const GptqOptions& opt, std::string_view name);

// The registry entry (quant/method.h).
const Method& gptq_method();

}  // namespace lowbit

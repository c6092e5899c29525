// SliM-LLM (Huang, Liu, Qin, Li, Zhang, Cai, Han, Liu, Qi 2024, "SliM-LLM: Salience-Driven Mixed-Precision
// Quantization for Large Language Models", arXiv 2405.14917), its GPTQ backbone as the authors' code runs it
// (Aaronhuang-778/SliM-LLM slim-llm/: run.py, slim_gptq.py SliMGPTQ.get_salience / fasterquant,
// utils/bitsearch.py activation_aware_search / block_quantize, utils/mixed_quantizer.py Quantizer.fit,
// utils/salient_mask.py, utils/reconstruct.py kl_div). Per linear W (rows, cols), groups of group_size
// columns:
//  1. salience of each group (§3.2, eq. 6), S_g = Σ_g W²/U_jj² with (H + 0.01·I)⁻¹ = UᵀU: an ABSOLUTE
//     dampening, H in upstream's scale 2/S Σ x xᵀ over S calibration sequences (lowbit's H is per token: it
//     is multiplied by the window length first). Upstream changes H in place here (dead diagonals set to 1,
//     the 0.01 added), which later steps inherit — kept: dead columns are not zeroed;
//  2. Salience-Determined Bit Allocation (§3.2): for i = 1 … G/2 − 1 the i least salient groups get b − 1
//  bits,
//     the i most salient b + 1, the rest b (the average stays b); each candidate quantizes W group by group
//     (per-row min–max RTN, 1-bit groups binarized μ ± mean|w|) and scores Σ_tokens KL(softmax(x Ŵᵀ) ‖
//     softmax(x Wᵀ)) over the output channels (probabilities clamped at 1e-6), averaged over the calibration
//     sequences; the first minimum wins. With G < 4 the range is empty (upstream fails there): every group
//     gets b bits;
//  3. the allocation applied to the groups ranked by salience again, now with GPTQ's relative dampening added
//     (λ = damp·mean diag H on the step-1 H, as upstream);
//  4. GPTQ's column loop in blocks of one group, each group fitted when it starts (on the updated weights):
//     ≥ 2 bits: Salience-Weighted Quantizer Calibration (§3.3): per row, the min–max range scaled by p over
//     {1, 1.002 … 1.1, 0.998 … 0.9} minimising Σ|Q(w) − w|^2.4 (the salient-entry weighting is 1 by default,
//     so the plain error: upstream's default, kept); 1 bit: μ = mean w, α = mean |w|, q = μ ± α.
//     Upstream's quantizer starts symmetric (zero = 2^(b−1) with the asymmetric scale) and turns asymmetric
//     at the first b- or (b+1)-bit group: a (b−1)-bit group before it keeps the symmetric zero (kept).
// Deviations, because the result is stored (formats/slim.h): scales and 1-bit means are rounded to fp16 when
// fitted; a 1-bit weight equal to μ gets μ + α (upstream's sign(0) = 0 gives μ).
// An allocation can be given instead of searched (option `allocation`: a JSON file of per-linear group bits,
// what `lowbit info --slim-allocation` exports); then, as upstream's precomputed-allocation path, plain
// GPTQ's H fix and dampening, and asymmetric grids throughout.
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "formats/slim.h"
#include "quant/method.h"

namespace lowbit {

struct SlimOptions {
  int bits = 2;  // the average b: groups get b − 1, b, b + 1
  int64_t group_size = 128;
  double damp = 0.01;
  double abs_damp = 0.01;     // step 1's absolute dampening (upstream's scale)
  int64_t window_tokens = 0;  // tokens per calibration sequence: H · window_tokens is upstream's H
  int max_damp_retries = 3;
};

struct SlimResult {
  std::shared_ptr<const SlimWeight> weight;
  std::vector<uint8_t> bits;      // (G)
  int i_star = 0;                 // groups moved down and up (0: uniform, or given)
  std::vector<double> sba_error;  // err_i for i = 1 … G/2 − 1 (mean over sequences of the KL sums)
  double loss = 0;                // Σ (w − q)² / U_ii² / 2
  double damp_used = 0;
};

// W: (rows, cols); H: (cols, cols) 2/N Σ x xᵀ over N tokens (consumed); x: (n_tok, cols) the calibration
// inputs, n_seq sequences of equal length (needed when no allocation is given and G ≥ 4); given: a bit per
// group, or empty to search.
SlimResult slim_quantize(const float* w, int64_t rows, int64_t cols, std::vector<float> H, const float* x,
                         int64_t n_tok, int64_t n_seq, const std::vector<uint8_t>& given,
                         const SlimOptions& opt, std::string_view name);

const Method& slim_method();

}  // namespace lowbit

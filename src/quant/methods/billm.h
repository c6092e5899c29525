// BiLLM (Huang, Liu, Qin, Li, Zhang, Cai, Han, Liu, Qi 2024, "BiLLM: Pushing the Limit of Post-Training
// Quantization for LLMs", arXiv 2402.04291), as the authors' code runs it (Aaronhuang-778/BiLLM: run.py
// `braq --blocksize 128 --salient_metric hessian`, bigptq.py BRAGPTQ.fasterquant, binary.py
// high_order_residual, utils/structure.py, utils/autosearch.py, utils/mask.py). Per linear W (rows, cols)
// with GPTQ's H = 2/N Σ x xᵀ, its dead-column fix and U with (H + λI)⁻¹ = UᵀU; then per block of
// group_size (128) columns, in order, on the current W (earlier blocks' compensation applied):
//  1. salience T = W²/U_jj² (`hessian`, §3.2's w²/[H⁻¹]²_jj) or T = W itself, signed (`magnitude`: upstream
//     passes the weights, not their magnitudes);
//  2. salient columns (§3.2, "structural search"): columns by Σ_rows |T| descending; for k = 1..49 the first
//     k are salient, and k minimises the error of binarizing T (second-order residual on the salient
//     columns and on the rest; upstream searches on T, not W);
//  3. the "bell-shaped" split (§3.3): non-salient entries with |T| ≥ p form the second group, p the
//     candidate among 81 quantiles (0.10 … 0.90) of |T| over the block (salient columns counted as zeros)
//     that minimises the error of binarizing T with the two groups binarized separately;
//  4. the block of W, as it is at the block's start, binarized per row over each mask: the two
//     non-salient groups once (μ ± α), the salient columns twice (the residual of the first binarization
//     binarized again, §3.2's "residual approximation");
//  5. error compensation to the later blocks only: W[:, ed:] −= ((W₁ − Q₁)/diag U) · U[st:ed, ed:]
//     (bigptq.py updates no column inside a block, unlike GPTQ).
// Binarization R(x) over a mask, per row: μ = mean x, α = mean |x − μ|, q = μ + sign(x − μ)·α.
// Deviations, both because the result is stored (formats/billm.h): the parameters of step 4 are rounded to
// fp16 before use (the salient columns' two means are stored as their sum), and a weight equal to μ gets
// μ + α where upstream's sign(0) = 0 gives μ. The searches of steps 2–3 follow upstream exactly in f32
// values (sign(0) = 0 included), with sums in double.
// Bits: the paper's 1 + (salient columns)/(columns) per linear (its "1.1 bit" counts neither the group
// plane nor the parameters), and the stored bits of formats/billm.h.
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "formats/billm.h"
#include "quant/method.h"

namespace lowbit {

struct BillmOptions {
  int64_t group_size = 128;    // upstream's blocksize (= its groupsize)
  bool hessian_metric = true;  // salience W²/U_jj² (else W)
  double damp = 0.01;
  int max_damp_retries = 3;
};

struct BillmResult {
  std::shared_ptr<const BillmWeight> weight;
  double loss = 0;  // Σ (w − q)² / U_ii² / 2, GPTQ's "error"
  double damp_used = 0;
  int64_t salient_cols = 0;
  double paper_bits = 0;      // 1 + salient_cols / cols
  std::vector<uint8_t> mask;  // (rows, cols): 0 / 1 the non-salient groups, 2 salient (reference dumps)
};

// W: (rows, cols) row-major; H: (cols, cols) symmetric 2/N Σ x xᵀ (consumed). name labels errors.
BillmResult billm_quantize(const float* w, int64_t rows, int64_t cols, std::vector<float> H,
                           const BillmOptions& opt, std::string_view name);

// The 81 split levels of step 3: torch.linspace(0.10, 0.90, 81) in float32 as PyTorch's CPU kernel makes it
// (8-lane chunks, each start + step·i from its chunk's base).
const std::vector<float>& billm_split_levels();
// np.quantile(a, q) (numpy 1.24, 'linear') of sorted float32 data, as upstream's pinned numpy computes it:
// the virtual index in float32 when n − 1 < 65536, else in float64; the interpolation in float64.
double billm_quantile(const std::vector<float>& sorted, float q);

const Method& billm_method();

}  // namespace lowbit

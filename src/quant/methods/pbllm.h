// PB-LLM (Shang, Yuan, Wu, Dong 2023, "PB-LLM: Partially Binarized Large Language Models", arXiv 2310.00034),
// its post-training path (§3.3 "PB-GPTQ"), as the authors' code runs it (hahnyuan/PB-LLM gptq_pb/:
// run.py `xnor --low_frac F --high_bit 8 --salient_metric hessian --groupsize 128`, gptq.py
// LowHighGPT.fasterquant, low_quant.py LowQuantizer 'xnor'). Per linear W (rows, cols) with GPTQ's
// H = 2/N Σ x xᵀ:
//  1. the salient weights' grid: per output row, asymmetric min–max at high_bit bits over the whole original
//     row (GPTQ's Quantizer convention: the range always holds 0), in f32;
//  2. GPTQ's H fix (dead columns: H_ii = 1, W[:, i] = 0) and U with (H + λI)⁻¹ = UᵀU, λ = damp·mean(diag H);
//  3. per column group (group_size columns, all rows together): salience W²/U_jj² (`hessian`, §3.3's
//     w²/[H⁻¹]²_jj) or |W| (`magnitude`); the threshold is the k-th smallest salience, k = ⌊numel·low_frac⌋,
//     and every weight at or below it is binarized (so ⌊numel·low_frac⌋ + 1 of them, plus ties), the rest
//     are salient;
//  4. per (row, group), from W·mask (salient positions zeroed, as upstream): μ = mean, α = mean|W·mask − μ|
//     over all group_size columns (upstream's quirk: the zeroed salient positions count, contributing |μ|);
//     μ and α are rounded to fp16 (they are stored so) before use;
//  5. GPTQ's column loop in blocks of 128: q = S·(clamp(round(w/S) + Z) − Z) at salient positions,
//     μ ± α (the sign of w − μ) at binarized ones, the error (w − q)/U_ii spread over the later columns.
// Masks and (μ, α) come from W before any error feedback (steps 3–4 precede step 5), as upstream.
// One deviation: upstream's sign(0) = 0 gives μ itself when w = μ exactly; a sign bit cannot hold that, so
// w = μ binarizes to μ + α.
// Bit accounting: the paper's (1 − r)·1 + r·high_bit for the salient fraction r = 1 − low_frac (low_frac 0.9
// is the study's "1.7 bit"; 6/7 is its "2 bit"), and the stored bits of formats/pbllm.h.
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "formats/pbllm.h"
#include "quant/method.h"

namespace lowbit {

struct PbllmOptions {
  double low_frac = 0.9;  // fraction of each group binarized, in (0, 1)
  int high_bits = 8;      // bits of the salient weights' per-row grid, 2..8
  int64_t group_size = 128;
  bool hessian_metric = true;  // salience W²/U_jj² (else |W|)
  double damp = 0.01;
  int max_damp_retries = 3;
};

struct PbllmResult {
  std::shared_ptr<const PbllmWeight> weight;
  double loss = 0;  // Σ (w − q)² / U_ii² / 2, upstream's "error"
  double damp_used = 0;
  double salient_fraction = 0;   // of all weights
  std::vector<uint8_t> salient;  // (rows, cols) 1 = salient, for the reference dumps
};

// W: (rows, cols) row-major; H: (cols, cols) symmetric 2/N Σ x xᵀ (consumed). name labels errors.
PbllmResult pbllm_quantize(const float* w, int64_t rows, int64_t cols, std::vector<float> H,
                           const PbllmOptions& opt, std::string_view name);

// The paper's bits per weight: (1 − r)·1 + r·high_bits with r = 1 − low_frac.
double pbllm_paper_bits(double low_frac, int high_bits);

const Method& pbllm_method();

}  // namespace lowbit

// AWQ (Lin, Tang, Tang, Yang, Dang, Gan, Han 2023, "AWQ: Activation-aware Weight Quantization for LLM
// Compression and Acceleration"), following the authors' llm-awq code (auto_scale.py, auto_clip.py).
//
// Scale search (§3.2, eq. 4-5): for the linears sharing an input X, s = s_X^α with s_X = mean_t |X[t, c]| per
// input channel, α ∈ {0, 1/20, ..., 19/20}; s is clamped to ≥ 1e-4 and normalised by sqrt(max s · min s); the
// candidate weights are Q(W·diag(s))·diag(s)⁻¹ and α minimises the mean squared error of a module's output:
//   q/k/v:   the self-attention output (via the unquantized o_proj); folds into input_layernorm
//   o:       o_proj's output, only if v_proj and o_proj shapes match (not with GQA); folds into v rows
//   gate/up: the MLP output (down_proj unquantized); folds into post_attention_layernorm
//   down:    down_proj's output; folds into up_proj rows
// All four searches see the full-precision block and its full-precision inputs; then all scales are folded.
// Clipping (auto_clip): for every linear but q and k, per (row, group) the weights are clamped to ±m with
// m = max|w|·(1 − i/20), i = 0..9, choosing the m whose quantized weights minimise the mean over a token
// subsample (every ⌊n/512⌋-th token) of (x·(ŵ − w))² summed over the group's columns. Finally RTN into the
// packed format. Q is the shared primitive (quant/primitives.h), so unlike llm-awq the grid always includes
// 0; the same whenever a group has both signs.
//
// Like llm-awq, the next layer is calibrated on the full-precision block outputs (computed before scaling).
// Memory: the MLP and down_proj inputs of all calibration tokens are kept (tokens × (n_embd + n_ff) floats).
#pragma once
#include <array>
#include <cmath>
#include <memory>

#include "formats/affine.h"
#include "model/llama.h"
#include "quant/calib.h"
#include "quant/method.h"
#include "quant/primitives.h"

namespace lowbit {

struct AwqOptions {
  QuantSpec spec;
  int64_t group_size = kPerChannel;  // input columns per (S, Z), or kPerChannel
  int n_grid = 20;
  bool clip = true;
  int clip_grid = 20;
  double clip_max_shrink = 0.5;
  int clip_tokens = 512;
};

struct AwqLayerResult {
  std::array<double, 4> alpha{NAN, NAN, NAN, NAN};             // chosen α per InputSite (NaN: not searched)
  std::array<double, 4> loss{NAN, NAN, NAN, NAN};              // its output MSE
  std::array<std::shared_ptr<const AffineWeight>, 7> weights;  // by LinearKind
  std::array<double, 7> rel_err{};  // ‖W' − Ŵ‖/‖W'‖ of the scaled, clipped weight W'
};

// acts: the inputs of block `layer`, replaced by the full-precision block's outputs. Folds the scales into
// the model's RMSNorm weights, replaces the 7 linears with packed weights.
AwqLayerResult awq_quantize_layer(LlamaModel& model, int layer, Activations& acts, const AwqOptions& opt);

// Folds per-site scales into block `layer` (llm-awq apply_scale): RMSNorm weight ÷ s and q/k/v (gate/up)
// input columns × s; v_proj rows ÷ s and o_proj columns × s (OIn); up_proj rows ÷ s and down_proj columns × s
// (DownIn). W holds the 7 linears' f32 weights by LinearKind and is modified in place (the model's linears
// are not touched); the model's RMSNorm weights are. An empty scale vector skips that site. Exact in real
// arithmetic: the block computes the same function.
void awq_fold_scales(LlamaModel& model, int layer, std::array<std::vector<float>, 7>& W,
                     const std::array<std::vector<float>, 4>& scales);

// s = clamp(s_x^α, 1e-4) / sqrt(max · min) (llm-awq's _search_module_scale).
std::vector<float> awq_scales(const std::vector<float>& mean_abs, float alpha);

// Per (row, group) clipping bound m (rows, n_groups) for W (rows, cols) given inputs X (n, cols).
std::vector<float> awq_clip_bounds(const float* W, int64_t rows, int64_t cols, const float* X, int64_t n,
                                   const AwqOptions& opt);

// The registry entry (quant/method.h).
const Method& awq_method();

}  // namespace lowbit

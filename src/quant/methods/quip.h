// QuIP (Chee, Cai, Kuleshov, De Sa 2023, "QuIP: 2-Bit Quantization of Large Language Models With
// Guarantees"): incoherence processing (§4: rescale, random orthogonal U, V) around LDLQ adaptive rounding
// (§3, Alg. 1-2, with the greedy refinement passes of §3.1), as the authors' code runs it with
// --incoh_processing (method.py preproc/postproc, vector_balance.py round_ldl / round_sorted_ldlqRG, quant.py
// qfn 'b'). Per linear W (rows, cols) with H = (1/N) Σ x xᵀ:
//  1. rescale: H /= max|H|; d = (diag H / diag WᵀW)^¼ (clamps 1e-8), rounded to f32 (it is stored so);
//     W ← W·diag(d), H ← H / (d dᵀ);
//  2. incoherence: H ← H·(n / (tr H + 1e-8)) + 0.01·I; W′ = U W Vᵀ, H′ = V H Vᵀ (formats/quip.h rotations);
//  3. GPTQ's H fix: dead diagonal entries → 1 with W′'s column zeroed; H′ += damp·mean(diag H′)·I;
//  4. one scale s = 2.4·RMS(W′) + 1e-16, rounded to f32; t = clamp(((W′/s) + 1)/2·maxq, 0, maxq);
//  5. LDLQ: with H′ = (L̊ + I)·D·(L̊ + I)ᵀ (L̊ strictly lower, from the Cholesky factor with its columns
//     scaled to a unit diagonal), columns from last to first: ŵ_i = clamp(⌊t_i + (t − ŵ)_{>i}·L̊_{>i, i} +
//     ½⌋, 0, maxq); then `npasses` greedy passes (coordinate descent on tr((ŵ − t) H (ŵ − t)ᵀ), round half
//     to even, clamped after each pass, stopping at a fixed point). `ldlqRG` runs it on the columns sorted by
//     diag H′ ascending.
// Everything is computed in double (upstream: float32 and the layer's fp16), so that an independent
// reference (tools/ref_quip.py) finds the same codes.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "formats/quip.h"
#include "quant/method.h"

namespace lowbit {

struct QuipOptions {
  int bits = 2;
  RotationKind rotation = RotationKind::Kronecker;
  bool sorted = false;  // ldlqRG
  int npasses = 1;
  double damp = 0.01;
  uint64_t seed_u = 0, seed_v = 0;
  int block = 128;  // LDLQ's lazy-batch width
  // Non-empty: this linear's dump directory (LOWBIT_QUANT_DUMP, quant/sequential.h, which has written W and
  // H there): the rotations, d, codes and meta.json go beside them for tools/ref_quip.py.
  std::string dump_dir;
};

struct QuipResult {
  std::shared_ptr<const QuipWeight> weight;
  double rel_err = 0;  // ‖W − Ŵ‖_F / ‖W‖_F
  double proxy = 0;  // tr((Ŵ′ − W′) H′ (Ŵ′ − W′)ᵀ) / tr(W′ H′ W′ᵀ) in the rotated space (H′ with damping)
  int dead_columns = 0;
  int passes_run = 0;
};

// W (rows, cols) row-major; H (cols, cols) symmetric, (1/N) Σ x xᵀ (consumed). name labels errors.
QuipResult quip_quantize(const float* w, int64_t rows, int64_t cols, std::vector<double> H,
                         const QuipOptions& opt, std::string_view name);

// The registry entry (quant/method.h).
const Method& quip_method();

}  // namespace lowbit

// NF4 quantization (QLoRA, Dettmers et al. 2023): bitsandbytes' quantize_4bit(quant_type="nf4", blocksize=64,
// compress_statistics=True) — blocks of 64 consecutive weights, absmax per block, the NF4 code of w/absmax —
// with optional IR-QLoRA information calibration (ICQ, Qin et al. 2024, §3.1): a per-block shift τ chosen to
// maximise the entropy of the block's codes. No calibration data. The storage format is formats/nf4.h; the
// semantics of every step, with the upstream function it follows, are spelled out in nf4.cpp.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "formats/nf4.h"
#include "quant/method.h"

namespace lowbit {

struct Nf4Options {
  bool double_quant = true;  // bitsandbytes compress_statistics: 8-bit absmax, one f32 per 256 blocks
  bool icq = false;          // IR-QLoRA's ICQ shift per block
  double icq_lambda = 0.1;   // search range ±λσ·A around the block median (IR-QLoRA tau_range)
  int icq_n = 100;           // 2n + 1 candidate shifts (IR-QLoRA tau_n)
};

// W (rows, cols) row-major into the NF4 format; cols must be a multiple of 64. Deterministic (independent of
// the thread count). What QLoRA's training code calls to build its frozen base weights.
std::shared_ptr<const Nf4Weight> quantize_nf4(const float* w, int64_t rows, int64_t cols,
                                              const Nf4Options& o);

// ICQ's search on its own (IR-QLoRA utils.py `search`): for each block of 64 consecutive weights of w (n a
// multiple of 64), the chosen candidate index k in [0, 2·icq_n] and its shift τ = τ0 + f_k·A.
struct IcqChoice {
  std::vector<int32_t> index;  // (n/64)
  std::vector<float> tau;      // (n/64)
};
IcqChoice icq_search(const float* w, int64_t n, double lambda, int n_steps);

// The entropy ICQ maximises, in the exact form the search compares: for a block's 16 code counts c_k (Σ =
// 64), H = 6 − S/64 with S = Σ_k c_k·log2(c_k). S is returned in fixed point (units of 2⁻⁴⁰, from the prime
// factorisation of each c_k), so equal entropies compare equal exactly and distinct ones keep their order:
// distinct values of S are ≥ 1.16e-6 apart, the rounding is ≤ 4e-10.
int64_t icq_entropy_key(const int* counts16);

// The registry entry (quant/method.h).
const Method& nf4_method();

}  // namespace lowbit

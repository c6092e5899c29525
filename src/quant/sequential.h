// The per-layer driver shared by the Hessian-based methods (GPTQ, QuIP, PB-LLM, BiLLM): GPTQ's llama.py
// order. The layer's linears are quantized in groups; before each group the block is run over the
// calibration windows (with every earlier group already quantized) to gather H at the group's input sites;
// after the last group the block's outputs with the quantized weights become the next layer's inputs.
// Without true-sequential there is one group of all seven linears, all from the full-precision block (what
// GPTQ, PB-LLM and BiLLM do by default).
//
// LOWBIT_QUANT_DUMP=DIR writes each linear's inputs and result for the reference scripts under tools/:
// DIR/<layer>.<self_attn.q_proj>/W.npy (f32 (rows, cols), the weight the method received), H.npy (the
// Hessian it received, f32 or f64 (cols, cols)), Q.npy (f32 (rows, cols): the reference dequantization of
// the packed result), plus whatever the method adds to LinearJob::dump_dir (masks, meta.json).
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "formats/format.h"
#include "quant/method.h"
#include "quant/quantize.h"

namespace lowbit {

struct LinearJob {
  int layer = 0;
  LinearKind kind = LinearKind::Q;
  std::string name;      // "model.layers.3.self_attn.q_proj.weight", for errors
  std::vector<float> w;  // (rows, cols) row-major, f32
  int64_t rows = 0, cols = 0;
  std::vector<float> H;            // (cols, cols) 2/N Σ xxᵀ (f32 observers)
  std::vector<double> H64;         // (cols, cols) 1/N Σ xxᵀ (f64 observers)
  std::filesystem::path dump_dir;  // non-empty under LOWBIT_QUANT_DUMP: this linear's dump directory
  // keep_inputs only: the calibration inputs at its site, (x_tokens, cols) window after window (shared by the
  // linears reading the site).
  std::shared_ptr<const std::vector<float>> x;
  int64_t x_tokens = 0;
};

// What the method returns per linear: the packed weight and the report fields it knows (loss, damp; rel_err
// when rel_err_given, else the driver computes ‖W − Ŵ‖_F / ‖W‖_F from the reference dequantizer).
struct LinearResult {
  std::shared_ptr<const PackedWeight> weight;
  double loss = NAN, damp = NAN, rel_err = NAN;
  double paper_bits = NAN;  // the bits per weight its paper counts, where the method knows them per linear
  bool rel_err_given = false;
};

using HessianQuantizer = std::function<LinearResult(LinearJob& job)>;

// Runs the driver above over job.layer: true_sequential = q/k/v, then o, then gate/up, then down; f64 =
// QuIP's float64 (1/N) Σ xxᵀ in LinearJob::H64 instead of GPTQ's f32 2/N Σ xxᵀ in H; keep_inputs = the
// inputs themselves in LinearJob::x as well (SliM-LLM's bit allocation compares output distributions; a
// testbed down_proj's are 128 MiB at 16 × 2048 tokens).
void quantize_layer_with_hessians(LayerJob& job, bool true_sequential, bool f64, const HessianQuantizer& q,
                                  bool keep_inputs = false);

// .npy v1.0 (little-endian, C order) for the reference dumps; descr "<f4", "<f8", "<i4", "|u1".
void write_npy(const std::filesystem::path& path, const void* data, size_t elem_size,
               const std::vector<int64_t>& shape, const char* descr);

}  // namespace lowbit

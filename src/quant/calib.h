// Calibration data and the layer-by-layer machinery shared by the calibrated methods (GPTQ, AWQ).
//
// Windows (GPTQ's datautils): the calibration text is tokenized as one stream with BOS at its start, and each
// of N windows of L tokens starts at an offset drawn uniformly from [0, n_tokens − L − 1] (Python's
// random.randint(0, n − L − 1) there; here std::mt19937_64 seeded with --seed and our own rejection sampling,
// because std::uniform_int_distribution differs between standard libraries).
//
// Activations of all windows at the current layer's input are kept as (N, L, d) values (quant/activations.h:
// f32 by default, which keeps GPTQ's Hessians free of an extra rounding; bf16, or f32 spilled to disk, for
// large models).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/tokenizer.h"
#include "model/llama.h"
#include "quant/activations.h"

namespace lowbit {

struct CalibSet {
  std::string path, sha256;   // the text file and its sha256 (provenance for quantization_config)
  int64_t stream_tokens = 0;  // tokens in the whole stream (BOS included)
  int nsamples = 0, seqlen = 0;
  std::vector<int32_t> tokens;  // (nsamples, seqlen)
  std::vector<int64_t> starts;  // (nsamples) offsets into the stream
};

// nsamples offsets in [0, n_tokens − seqlen − 1], deterministic in seed. Requires n_tokens ≥ seqlen + 1.
std::vector<int64_t> sample_window_starts(int64_t n_tokens, int nsamples, int seqlen, uint64_t seed);

// Reads and tokenizes `path`; throws "<path>: calibration text has N tokens, fewer than seqlen + 1 = M".
CalibSet load_calibration(const Tokenizer& tok, const std::string& path, int nsamples, int seqlen,
                          uint64_t seed);

// Embeddings of the first T tokens of every window (T ≤ seqlen; a prefix is exact for a causal model).
// Releases the embedding table's mapped pages as it goes, so none of it stays resident.
Activations embed_windows(const LlamaModel& model, const CalibSet& calib, int T,
                          ActStorage storage = ActStorage::F32, const std::string& spill_dir = "");

// Thrown by an observer to end block_forward once it has seen what it needs (the rest of the block is wasted
// work). block_forward holds only RAII buffers and calls observers outside parallel regions, so this is safe;
// the KV-cache rows it wrote are simply overwritten by the next window.
struct StopBlock {};

// Runs block `layer` over every window. update: the windows are replaced by the block's outputs; otherwise
// they are left as they were (statistics only). StopBlock from the observer ends that window's run.
void run_block(const LlamaModel& model, int layer, Activations& acts, BlockObserver* obs, bool update);

// Accumulates H = 2/N Σ x xᵀ over the N tokens seen at chosen sites (GPTQ eq. 1's Hessian 2XXᵀ, averaged so
// its magnitude does not grow with N; GPTQ's reference keeps a running average over samples instead — the
// scale of H cancels in GPTQ). Sums in fp32 with BLAS ssyrk per call, finalised on request. Sites after the
// last one wanted stop the block (StopBlock).
//
// f64: sums in double instead (each window's x converted, BLAS dsyrk), for QuIP, whose reference accumulates
// H = (1/N) Σ x xᵀ in float64; read it with hessian_f64.
class HessianObserver : public BlockObserver {
 public:
  explicit HessianObserver(std::vector<InputSite> sites, bool f64 = false);
  void observe(int layer, InputSite site, const float* x, int64_t n, int64_t cols) override;
  // (cols, cols) full symmetric H of a site; a copy.
  std::vector<float> hessian(InputSite site) const;
  // The same, moved out of the observer (no copy: for a 1B model's down_proj H is 256 MiB); the site's
  // statistics are gone afterwards.
  std::vector<float> take_hessian(InputSite site);
  // (cols, cols) full symmetric (1/N) Σ x xᵀ in double (an f64 observer only): a copy, or moved out (the
  // site's sums are released).
  std::vector<double> hessian_f64(InputSite site) const;
  std::vector<double> take_hessian_f64(InputSite site);
  int64_t tokens(InputSite site) const { return acc_[int(site)].n; }
  // Work done by the xᵀx accumulation so far (syrk: n·c·(c+1) flops per update) and its wall time.
  double flops() const { return flops_; }
  double seconds() const { return seconds_; }

 private:
  struct Acc {
    bool wanted = false;
    int64_t cols = 0, n = 0;
    std::vector<float> s;     // Σ x xᵀ, upper triangle (row-major)
    std::vector<double> s64;  // the same in double (f64 observers)
  };
  bool f64_ = false;
  std::vector<double> x64_;  // scratch: the window's x in double
  static std::vector<float> finish(std::vector<float> s, int64_t c, int64_t n);
  static std::vector<double> finish_f64(std::vector<double> s, int64_t c, int64_t n);
  Acc acc_[4];
  int last_ = 0;
  double flops_ = 0, seconds_ = 0;
};

}  // namespace lowbit

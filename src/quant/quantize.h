// The one entry point for weight-only quantization of a whole model (what `lowbit quantize` calls): every
// block's seven linears are replaced by packed QuantizedWeights (formats/affine.h); embeddings, norms and
// the head stay in full precision (AWQ folds its scales into the RMSNorm weights).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/json.h"
#include "io/tokenizer.h"
#include "model/llama.h"
#include "quant/method.h"
#include "quant/primitives.h"

namespace lowbit {

struct QuantConfig {
  std::string method = "gptq";  // a registered method (quant/method.h)
  int wbits = 4;                // within the method's min_bits..max_bits
  int group = 128;              // input columns per (S, Z); kPerChannel (-1) = one group per output channel
  // The method's own options by name (its MethodOption schema): given ones only, or all of them once
  // quantize_model has resolved the defaults. Read them with opt<T>().
  Json options = Json::object();
  // Calibration, for the methods that need it.
  int nsamples = 128, seqlen = 2048;
  uint64_t seed = 0;
  std::string calib_file;          // required by methods with needs_calibration
  std::string calib_acts = "f32";  // f32 | bf16 | disk (quant/activations.h)
  std::string spill_dir;  // scratch files (finished layers, disk activations); empty = $TMPDIR or /tmp
  // Trained methods (DB-LLM): where training state is checkpointed, so that a killed run resumes there with
  // the same result; empty = no checkpoints.
  std::string work_dir;
  bool quiet = false;  // no progress bar

  // An option's value: the given one, else the method's default (throws if the method has no such option).
  template <class T>
  T opt(const std::string& key) const {
    if (auto it = options.find(key); it != options.end()) return it->get<T>();
    return option_default(key).get<T>();
  }

 private:
  const Json& option_default(const std::string& key) const;
};

struct LinearReport {
  int layer = 0;
  LinearKind kind = LinearKind::Q;
  int64_t rows = 0, cols = 0;
  double rel_err = 0;  // ‖W − Ŵ‖_F / ‖W‖_F (AWQ: of the scaled and clipped weight it quantized)
  double loss = NAN;   // GPTQ: the reference's error Σ (w − ŵ)²/U_ii²/2; NaN for other methods
  double damp = NAN;   // GPTQ: relative dampening that factorized (> cfg.damp after the non-PD fallback)
  double bits_per_weight = 0;
  double paper_bits = NAN;  // BiLLM: 1 + its salient-column fraction; NaN where the method does not say
};

struct LayerReport {
  int layer = 0;
  double seconds = 0;
  std::array<double, 4> awq_alpha{NAN, NAN, NAN, NAN};  // by InputSite
};

struct QuantReport {
  QuantConfig config;
  std::vector<LinearReport> linears;
  std::vector<LayerReport> layers;
  double seconds = 0;
  uint64_t peak_rss = 0;
  int64_t n_weights = 0;       // quantized weights
  double bits_per_weight = 0;  // storage of the quantized linears (codes + scales + zeros + g_idx) per weight
  // The bits per weight the method's paper counts (PB-LLM's (1 − r)·1 + r·8; wbits for most methods).
  double paper_bits = 0;
  double hessian_seconds = 0;  // GPTQ: time in the xᵀx accumulation (syrk), and its flops
  double hessian_flops = 0;
  std::string calib_sha256;  // empty for RTN
  int64_t calib_stream_tokens = 0;
};

// Whether a registered method (quant/method.h) needs a calibration text.
bool method_needs_calibration(const std::string& method);

// The checks of the settings alone: method, bits, group, options that the method does not take, calibration
// settings. Throws a one-line Error.
void validate_quant_options(const QuantConfig& cfg);

// validate_quant_options, then the group against the model's shape (it must divide every linear's width; the
// loaded tensors' shapes are checked against the config at load). Throws a one-line Error.
void validate_quant_settings(const ModelConfig& mc, const QuantConfig& cfg);

// validate_quant_settings, then the weights: throws a one-line Error for: unknown method, bits outside 2..8,
// a group that does not divide a linear's width, GPTQ-only options with another method, missing calibration
// file, non-finite weights (naming the tensor), already-quantized linears, bad nsamples/seqlen/damp.
void validate_quant_config(const LlamaModel& model, const QuantConfig& cfg);

QuantReport quantize_model(LlamaModel& model, const Tokenizer& tok, const QuantConfig& cfg);

// The `quantization_config` a quantized checkpoint's config.json records: method, bits, group, options,
// format, bits per weight, source model, lowbit version, and the calibration (file, sha256, nsamples, seqlen,
// seed) for calibrated methods.
Json quantization_config_json(const QuantConfig& q, const QuantReport& rep, const std::string& source_model);

// W·A·: every block linear's input quantized per token to `abits` (2..8) at inference, through the
// activation hook (kernels/input_transform.h PerTokenQuant: SmoothQuant's per-token absmax fake
// quantization); the LM head and the attention products stay float. Replaces any input transform the linears
// had.
void set_activation_bits(LlamaModel& model, int abits);

// For method files (quant/methods/): the pieces every per-layer function needs.
std::string linear_tensor_name(int layer, LinearKind k);  // "model.layers.3.self_attn.q_proj.weight"
QuantSpec affine_spec(const QuantConfig& cfg);  // wbits, and the sym / mse options if the method has them
// The report line of a packed linear: its shape and storage bits per weight; with the source weight w, also
// its relative error ‖W − Ŵ‖_F / ‖W‖_F.
LinearReport linear_report(int layer, LinearKind k, const PackedWeight& q);
LinearReport linear_report(int layer, LinearKind k, const std::vector<float>& w, const PackedWeight& q);
// Replaces the model's linear with the packed weight.
void install_linear(LlamaModel& model, int layer, LinearKind k, std::shared_ptr<const PackedWeight> q);
// The per-layer function of a method that quantizes each linear on its own, from its weight alone (RTN):
// for each of the layer's linears in turn, quantize(W (rows, cols) as f32) is reported (with its error)
// and installed.
using LinearQuantizer = std::function<std::shared_ptr<const PackedWeight>(const std::vector<float>& w,
                                                                          int64_t rows, int64_t cols)>;
void quantize_each_linear(LayerJob& job, const LinearQuantizer& quantize);

}  // namespace lowbit

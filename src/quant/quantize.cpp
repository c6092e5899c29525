#include "quant/quantize.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <set>

#include "core/dtype.h"
#include "core/error.h"
#include "core/mmap.h"
#include "core/progress.h"
#include "core/sys.h"
#include "kernels/linear.h"
#include "quant/awq.h"
#include "quant/calib.h"
#include "quant/gptq.h"
#include "quant/rtn.h"

namespace lowbit {

namespace {

std::string tensor_name(int layer, LinearKind k) {
  return fmt::format("model.layers.{}.{}.weight", layer, linear_name(k));
}

QuantSpec spec_of(const QuantConfig& c) {
  QuantSpec s;
  s.bits = c.wbits;
  s.sym = c.sym;
  s.mse = c.mse;
  return s;
}

int64_t group_of(const QuantConfig& c) {
  return c.group > 0 ? c.group : 0;
}

// ‖W − Ŵ‖ / ‖W‖, dequantizing a few rows at a time (a whole f32 copy of a 1B model's down_proj is 64 MiB).
double rel_err(const std::vector<float>& w, const QuantizedWeight& q) {
  const int64_t step = 64;
  std::vector<float> deq(size_t(std::min(step, q.rows) * q.cols));
  double num = 0, den = 0;
  for (int64_t r0 = 0; r0 < q.rows; r0 += step) {
    const int64_t nr = std::min(step, q.rows - r0);
    dequantize_rows(q, r0, nr, deq.data());
    const float* wr = w.data() + size_t(r0 * q.cols);
    for (size_t i = 0; i < size_t(nr * q.cols); ++i) {
      const double e = double(wr[i]) - deq[i];
      num += e * e;
      den += double(wr[i]) * wr[i];
    }
  }
  return den > 0 ? std::sqrt(num / den) : 0;
}

LinearReport linear_report(int layer, LinearKind k, const QuantizedWeight& q) {
  LinearReport r;
  r.layer = layer;
  r.kind = k;
  r.rows = q.rows;
  r.cols = q.cols;
  r.bits_per_weight = q.bits_per_weight();
  return r;
}

size_t dense_bytes(const Linear& l) {
  return l.quant ? 0 : size_t(l.dense.rows * l.dense.cols) * dtype_size(l.dense.dtype);
}

// The same packed weight, its bytes moved to a read-only mapping of the scratch file (codes, scales, zeros,
// g_idx, each 64-byte aligned, in one piece). Bitwise the same data, so everything computed from it is too.
std::shared_ptr<const QuantizedWeight> spill_weight(ScratchFile& scratch, const QuantizedWeight& q) {
  auto up = [](size_t n) { return (n + 63) / 64 * 64; };
  const size_t nc = size_t(q.rows) * q.row_bytes(), ns = size_t(q.rows * q.n_groups()) * sizeof(uint16_t),
               nz = size_t(q.rows * q.n_groups()), ng = q.g_idx ? size_t(q.cols) * sizeof(int32_t) : 0;
  const size_t os = up(nc), oz = os + up(ns), og = oz + up(nz), total = og + ng;
  std::vector<uint8_t> buf(total, 0);
  std::memcpy(buf.data(), q.codes, nc);
  std::memcpy(buf.data() + os, q.scales, ns);
  std::memcpy(buf.data() + oz, q.zeros, nz);
  if (ng) std::memcpy(buf.data() + og, q.g_idx, ng);
  std::shared_ptr<const uint8_t> m = scratch.append_mapped(buf.data(), total);
  auto out = std::make_shared<QuantizedWeight>(q);
  out->codes = m.get();
  out->scales = reinterpret_cast<const uint16_t*>(m.get() + os);
  out->zeros = m.get() + oz;
  out->g_idx = ng ? reinterpret_cast<const int32_t*>(m.get() + og) : nullptr;
  out->owner = std::move(m);
  return out;
}

void install(LlamaModel& model, int layer, LinearKind k, std::shared_ptr<const QuantizedWeight> q) {
  Linear l;
  l.quant = std::move(q);
  model.set_linear(layer, k, std::move(l));
}

void quantize_layer_rtn(LlamaModel& model, int layer, const QuantConfig& cfg, QuantReport& rep) {
  for (LinearKind k : kAllLinears) {
    const Linear& lin = model.linear(layer, k);
    const std::vector<float> w = linear_to_f32(lin);
    auto q = quantize_rtn(w.data(), lin.rows(), lin.cols(), spec_of(cfg),
                          cfg.group > 0 ? Granularity::Group : Granularity::Channel, group_of(cfg));
    LinearReport r = linear_report(layer, k, *q);
    r.rel_err = rel_err(w, *q);
    rep.linears.push_back(r);
    install(model, layer, k, std::move(q));
  }
}

// GPTQ's llama.py: Hessians from the block with every earlier group already quantized (true-sequential) or
// all from the full-precision block; then the block's outputs with the quantized weights become the next
// inputs.
void quantize_layer_gptq(LlamaModel& model, int layer, Activations& acts, const QuantConfig& cfg,
                         QuantReport& rep) {
  using K = LinearKind;
  std::vector<std::vector<K>> groups;
  if (cfg.true_sequential)
    groups = {{K::K, K::V, K::Q}, {K::O}, {K::Up, K::Gate}, {K::Down}};
  else
    groups = {{K::Q, K::K, K::V, K::O, K::Gate, K::Up, K::Down}};
  GptqOptions opt;
  opt.spec = spec_of(cfg);
  opt.group_size = group_of(cfg);
  opt.act_order = cfg.act_order;
  opt.static_groups = cfg.static_groups;
  opt.damp = cfg.damp;
  for (const auto& group : groups) {
    std::set<InputSite> sites;
    for (K k : group) sites.insert(input_site(k));
    HessianObserver obs(std::vector<InputSite>(sites.begin(), sites.end()));
    run_block(model, layer, acts, &obs, false);
    rep.hessian_seconds += obs.seconds();
    rep.hessian_flops += obs.flops();
    for (size_t i = 0; i < group.size(); ++i) {
      const K k = group[i];
      const Linear& lin = model.linear(layer, k);
      const std::vector<float> w = linear_to_f32(lin);
      // The last linear reading a site takes its H instead of copying it.
      const bool last = std::none_of(group.begin() + long(i) + 1, group.end(),
                                     [&](K later) { return input_site(later) == input_site(k); });
      GptqResult g = gptq_quantize(w.data(), lin.rows(), lin.cols(),
                                   last ? obs.take_hessian(input_site(k)) : obs.hessian(input_site(k)), opt,
                                   tensor_name(layer, k));
      LinearReport r = linear_report(layer, k, *g.weight);
      r.rel_err = rel_err(w, *g.weight);
      r.loss = g.loss;
      r.damp = g.damp_used;
      rep.linears.push_back(r);
      install(model, layer, k, std::move(g.weight));
    }
  }
  run_block(model, layer, acts, nullptr, true);
}

}  // namespace

const std::vector<std::string>& quant_methods() {
  static const std::vector<std::string> m{"rtn", "gptq", "awq"};
  return m;
}

bool method_needs_calibration(const std::string& method) {
  return method == "gptq" || method == "awq";
}

void validate_quant_options(const QuantConfig& c) {
  const bool gptq = c.method == "gptq", awq = c.method == "awq";
  if (std::find(quant_methods().begin(), quant_methods().end(), c.method) == quant_methods().end())
    fail("--method '{}' is not one of {}", c.method, fmt::join(quant_methods(), ", "));
  if (c.wbits < 2 || c.wbits > 8)
    fail("--wbits {} is not supported by {} (supported: 2..8 bits)", c.wbits, c.method);
  if (c.group < -1) fail("--group {} is invalid (a positive group size, or -1 for per-channel)", c.group);
  if (!gptq) {
    if (c.act_order) fail("--act-order applies to gptq only, not {}", c.method);
    if (c.static_groups) fail("--static-groups applies to gptq only, not {}", c.method);
    if (c.true_sequential) fail("--true-sequential applies to gptq only, not {}", c.method);
  }
  if (gptq && !(c.damp > 0 && std::isfinite(c.damp))) fail("--damp {} must be a positive number", c.damp);
  if (method_needs_calibration(c.method)) {
    if (c.calib_file.empty()) fail("--method {} needs a calibration text (--calib FILE)", c.method);
    if (c.nsamples < 1) fail("--nsamples {} must be at least 1", c.nsamples);
    if (c.seqlen < 1) fail("--seqlen {} must be at least 1", c.seqlen);
    if (awq && c.awq_seqlen < 0) fail("awq_seqlen {} must be >= 0", c.awq_seqlen);
    parse_act_storage(c.calib_acts);
  }
}

void validate_quant_settings(const ModelConfig& mc, const QuantConfig& c) {
  validate_quant_options(c);
  // in_features of the block linears: q/k/v/gate/up read n_embd, o reads n_head·head_dim, down reads n_ff.
  if (c.group > 0)
    for (LinearKind k : kAllLinears) {
      const int width = k == LinearKind::O      ? mc.n_head * mc.head_dim
                        : k == LinearKind::Down ? mc.n_ff
                                                : mc.n_embd;
      if (width % c.group != 0)
        fail("--group {} does not divide in_features {} of {}", c.group, width, tensor_name(0, k));
    }
}

void validate_quant_config(const LlamaModel& model, const QuantConfig& c) {
  validate_quant_settings(model.config(), c);
  const ModelConfig& mc = model.config();
  for (int l = 0; l < mc.n_layer; ++l)
    for (LinearKind k : kAllLinears) {
      const Linear& lin = model.linear(l, k);
      const std::string name = tensor_name(l, k);
      if (lin.quant) fail("{} is already quantized; quantize a full-precision model", name);
      const std::vector<float> w = linear_to_f32(lin);
      check_finite(w.data(), lin.rows(), lin.cols(), name);
      // Read once here; let the pages go until the layer is quantized (a no-op unless memory-mapped).
      release_mapped_pages(lin.dense.data, dense_bytes(lin));
    }
}

QuantReport quantize_model(LlamaModel& model, const Tokenizer& tok, const QuantConfig& cfg) {
  Timer timer;
  validate_quant_config(model, cfg);
  QuantReport rep;
  rep.config = cfg;
  const int L = model.config().n_layer;
  Activations acts;
  if (cfg.method != "rtn") {
    const CalibSet calib = load_calibration(tok, cfg.calib_file, cfg.nsamples, cfg.seqlen, cfg.seed);
    rep.calib_sha256 = calib.sha256;
    rep.calib_stream_tokens = calib.stream_tokens;
    int T = cfg.seqlen;
    if (cfg.method == "awq" && cfg.awq_seqlen > 0) T = std::min(T, cfg.awq_seqlen);
    // Leaves none of the embedding table resident: it is not read again here (a tied head is not run).
    acts = embed_windows(model, calib, T, parse_act_storage(cfg.calib_acts), cfg.spill_dir);
  }
  AwqOptions aopt;
  aopt.spec = spec_of(cfg);
  aopt.group_size = group_of(cfg);

  // Finished layers are moved here, so quantized layers do not pile up in RAM while the next are computed
  // (16 × 32 MiB for a 1B model at 4 bits; 4 GiB for an 8B one).
  std::optional<ScratchFile> scratch;
  try {
    scratch.emplace(cfg.spill_dir);
  } catch (const Error& e) {
    fail("{} (quantized layers are kept there; choose another with --spill-dir or TMPDIR)", e.what());
  }
  Progress progress(
      fmt::format("{} w{}{}", cfg.method, cfg.wbits, cfg.group > 0 ? fmt::format("g{}", cfg.group) : ""),
      uint64_t(L), "layer", cfg.quiet);
  for (int l = 0; l < L; ++l) {
    Timer lt;
    LayerReport lr;
    lr.layer = l;
    std::vector<Linear> originals;  // keeps the source weights alive until their pages are released below
    for (LinearKind k : kAllLinears) originals.push_back(model.linear(l, k));
    if (cfg.method == "rtn") {
      quantize_layer_rtn(model, l, cfg, rep);
    } else if (cfg.method == "gptq") {
      quantize_layer_gptq(model, l, acts, cfg, rep);
    } else {
      const AwqLayerResult a = awq_quantize_layer(model, l, acts, aopt);
      lr.awq_alpha = a.alpha;
      for (LinearKind k : kAllLinears) {
        LinearReport r = linear_report(l, k, *a.weights[size_t(int(k))]);
        r.rel_err = a.rel_err[size_t(int(k))];
        rep.linears.push_back(r);
      }
    }
    for (const Linear& o : originals) release_mapped_pages(o.dense.data, dense_bytes(o));
    for (LinearKind k : kAllLinears) install(model, l, k, spill_weight(*scratch, *model.linear(l, k).quant));
    release_free_memory();  // the layer's freed work buffers, so the next layer's start from a trimmed heap
    lr.seconds = lt.seconds();
    rep.layers.push_back(lr);
    progress.add(1);
  }
  progress.finish();

  double bits = 0;
  for (const LinearReport& r : rep.linears) {
    rep.n_weights += r.rows * r.cols;
    bits += r.bits_per_weight * double(r.rows * r.cols);
  }
  rep.bits_per_weight = rep.n_weights ? bits / double(rep.n_weights) : 0;
  rep.seconds = timer.seconds();
  rep.peak_rss = peak_rss_bytes();
  return rep;
}

Json quantization_config_json(const QuantConfig& q, const QuantReport& rep, const std::string& source_model) {
  Json qc = {{"quant_method", q.method},
             {"bits", q.wbits},
             {"group_size", q.group},
             {"sym", q.sym},
             {"desc_act", q.act_order},
             {"static_groups", q.static_groups},
             {"true_sequential", q.true_sequential},
             {"mse", q.mse},
             {"damp_percent", q.damp},
             {"format", "lowbit-packed-v1"},
             {"bits_per_weight", rep.bits_per_weight},
             {"source_model", source_model},
             {"lowbit_version", LOWBIT_VERSION}};
  if (method_needs_calibration(q.method))
    qc["calibration"] = {{"file", q.calib_file},   {"sha256", rep.calib_sha256},
                         {"nsamples", q.nsamples}, {"seqlen", q.seqlen},
                         {"seed", q.seed},         {"activations", q.calib_acts}};
  return qc;
}

}  // namespace lowbit

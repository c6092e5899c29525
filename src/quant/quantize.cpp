#include "quant/quantize.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "core/dtype.h"
#include "core/error.h"
#include "core/mmap.h"
#include "core/progress.h"
#include "core/sys.h"
#include "kernels/format_kernels.h"
#include "kernels/linear.h"
#include "quant/calib.h"

namespace lowbit {

std::string linear_tensor_name(int layer, LinearKind k) {
  return fmt::format("model.layers.{}.{}.weight", layer, linear_name(k));
}

QuantSpec affine_spec(const QuantConfig& c) {
  QuantSpec s;
  s.bits = c.wbits;
  const Method& m = method_or_fail(c.method);
  s.sym = m.option("sym") && c.opt<bool>("sym");
  s.mse = m.option("mse") && c.opt<bool>("mse");
  return s;
}

const Json& QuantConfig::option_default(const std::string& key) const {
  const MethodOption* o = method_or_fail(method).option(key);
  if (!o) fail("method {} has no option '{}'", method, key);
  return o->def;
}

namespace {

// ‖W − Ŵ‖ / ‖W‖, dequantizing a few rows at a time (a whole f32 copy of a 1B model's down_proj is 64 MiB).
double rel_err(const std::vector<float>& w, const PackedWeight& q) {
  const FormatKernels& fk = format_kernels(q.format());
  const int64_t step = 64;
  std::vector<float> deq(size_t(std::min(step, q.rows) * q.cols));
  double num = 0, den = 0;
  for (int64_t r0 = 0; r0 < q.rows; r0 += step) {
    const int64_t nr = std::min(step, q.rows - r0);
    fk.dequantize_rows(q, r0, nr, deq.data());
    const float* wr = w.data() + size_t(r0 * q.cols);
    for (size_t i = 0; i < size_t(nr * q.cols); ++i) {
      const double e = double(wr[i]) - deq[i];
      num += e * e;
      den += double(wr[i]) * wr[i];
    }
  }
  return den > 0 ? std::sqrt(num / den) : 0;
}

size_t dense_bytes(const Linear& l) {
  return l.packed ? 0 : size_t(l.dense.rows * l.dense.cols) * dtype_size(l.dense.dtype);
}

// The same packed weight, its bytes moved to a read-only mapping of the scratch file (its format's tensors,
// each 64-byte aligned, in one piece) and read back through the format. Bitwise the same data, so everything
// computed from it is too.
std::shared_ptr<const PackedWeight> spill_weight(ScratchFile& scratch, const PackedWeight& q) {
  auto up = [](size_t n) { return (n + 63) / 64 * 64; };
  std::vector<FormatTensor> parts = q.format().tensors(q);
  std::vector<size_t> offset;
  size_t total = 0;
  for (const FormatTensor& t : parts) {
    offset.push_back(total);
    total += up(t.view.nbytes);
  }
  std::vector<uint8_t> buf(total, 0);
  for (size_t i = 0; i < parts.size(); ++i)
    std::memcpy(buf.data() + offset[i], parts[i].view.data, parts[i].view.nbytes);
  std::shared_ptr<const uint8_t> m = scratch.append_mapped(buf.data(), total);
  for (size_t i = 0; i < parts.size(); ++i) parts[i].view.data = m.get() + offset[i];
  auto get = [&](std::string_view suffix) -> const TensorView* {
    for (const FormatTensor& t : parts)
      if (t.suffix == suffix) return &t.view;
    return nullptr;
  };
  std::shared_ptr<PackedWeight> out = q.format().from_tensors(get, q.rows, q.cols, "spilled weight");
  out->owner = std::move(m);
  return out;
}

}  // namespace

LinearReport linear_report(int layer, LinearKind k, const PackedWeight& q) {
  LinearReport r;
  r.layer = layer;
  r.kind = k;
  r.rows = q.rows;
  r.cols = q.cols;
  r.bits_per_weight = q.format().bits_per_weight(q);
  return r;
}

LinearReport linear_report(int layer, LinearKind k, const std::vector<float>& w, const PackedWeight& q) {
  LinearReport r = linear_report(layer, k, q);
  r.rel_err = rel_err(w, q);
  return r;
}

void install_linear(LlamaModel& model, int layer, LinearKind k, std::shared_ptr<const PackedWeight> q) {
  model.set_linear(layer, k, packed_linear(std::move(q)));
}

void quantize_each_linear(LayerJob& job, const LinearQuantizer& quantize) {
  for (LinearKind k : kAllLinears) {
    const Linear& lin = job.model.linear(job.layer, k);
    const std::vector<float> w = linear_to_f32(lin);
    std::shared_ptr<const PackedWeight> q = quantize(w, lin.rows(), lin.cols());
    job.report.linears.push_back(linear_report(job.layer, k, w, *q));
    install_linear(job.model, job.layer, k, std::move(q));
  }
}

bool method_needs_calibration(const std::string& method) {
  const Method* m = find_method(method);
  return m && m->needs_calibration;
}

void validate_quant_options(const QuantConfig& c) {
  const Method& m = method_or_fail(c.method);
  if (c.wbits < m.min_bits || c.wbits > m.max_bits)
    fail("--wbits {} is not supported by {} (supported: {} bits)", c.wbits, c.method,
         m.min_bits == m.max_bits ? std::to_string(m.min_bits)
                                  : fmt::format("{}..{}", m.min_bits, m.max_bits));
  if (c.group == 0 || c.group < kPerChannel)
    fail("--group {} is invalid (a positive group size, or {} for per-channel)", c.group, kPerChannel);
  if (m.fixed_group != 0 && c.group != m.fixed_group)
    fail("--group {}: {} quantizes fixed blocks of {} consecutive weights (leave --group out, or pass {})",
         c.group, c.method, m.fixed_group, m.fixed_group);
  if (m.group_multiple != 0 && (c.group <= 0 || c.group % m.group_multiple != 0 || c.group < m.min_group ||
                                (m.max_group != 0 && c.group > m.max_group)))
    fail("--group {}: {} takes a group that is a multiple of {}, at least {}{}", c.group, c.method,
         m.group_multiple, std::max(m.min_group, m.group_multiple),
         m.max_group ? fmt::format(", at most {}", m.max_group) : std::string());
  resolve_method_options(m, c.options);
  if (m.needs_calibration) {
    if (c.calib_file.empty()) fail("--method {} needs a calibration text (--calib FILE)", c.method);
    if (c.nsamples < 1) fail("--nsamples {} must be at least 1", c.nsamples);
    if (c.seqlen < 1) fail("--seqlen {} must be at least 1", c.seqlen);
    parse_act_storage(c.calib_acts);
  }
}

void validate_quant_settings(const ModelConfig& mc, const QuantConfig& c) {
  validate_quant_options(c);
  // in_features of the block linears: q/k/v/gate/up read n_embd, o reads n_head·head_dim, down reads n_ff.
  if (c.group != kPerChannel)
    for (LinearKind k : kAllLinears) {
      const int width = k == LinearKind::O      ? mc.n_head * mc.head_dim
                        : k == LinearKind::Down ? mc.n_ff
                                                : mc.n_embd;
      if (width % c.group != 0)
        fail("--group {} does not divide in_features {} of {}", c.group, width, linear_tensor_name(0, k));
    }
}

void validate_quant_config(const LlamaModel& model, const QuantConfig& c) {
  validate_quant_settings(model.config(), c);
  const ModelConfig& mc = model.config();
  for (int l = 0; l < mc.n_layer; ++l)
    for (LinearKind k : kAllLinears) {
      const Linear& lin = model.linear(l, k);
      const std::string name = linear_tensor_name(l, k);
      if (lin.packed) fail("{} is already quantized; quantize a full-precision model", name);
      const std::vector<float> w = linear_to_f32(lin);
      check_finite(w.data(), lin.rows(), lin.cols(), name);
      // Read once here; let the pages go until the layer is quantized (a no-op unless memory-mapped).
      release_mapped_pages(lin.dense.data, dense_bytes(lin));
    }
}

namespace {

// The totals of a report whose linears are in.
QuantReport finish_report(QuantReport& rep, const Timer& timer) {
  double bits = 0;
  for (const LinearReport& r : rep.linears) {
    rep.n_weights += r.rows * r.cols;
    bits += r.bits_per_weight * double(r.rows * r.cols);
  }
  rep.bits_per_weight = rep.n_weights ? bits / double(rep.n_weights) : 0;
  const Method* m = find_method(rep.config.method);
  rep.paper_bits = m && m->paper_bits ? m->paper_bits(rep.config, rep) : double(rep.config.wbits);
  rep.seconds = timer.seconds();
  rep.peak_rss = peak_rss_bytes();
  return rep;
}

}  // namespace

QuantReport quantize_model(LlamaModel& model, const Tokenizer& tok, const QuantConfig& given) {
  Timer timer;
  validate_quant_config(model, given);
  const Method& method = method_or_fail(given.method);
  QuantConfig cfg = given;
  cfg.options = resolve_method_options(method, given.options);  // every option, defaults filled in
  QuantReport rep;
  rep.config = cfg;
  const int L = model.config().n_layer;
  if (method.quantize_model) {  // a trained method: the whole model at once
    method.quantize_model(model, tok, cfg, rep);
    for (int l = 0; l < L; ++l)
      for (LinearKind k : kAllLinears) {
        const Linear& q = model.linear(l, k);
        if (!q.packed || q.packed->format().name != method.format)
          fail("method {} left {} {}", method.name, linear_tensor_name(l, k),
               q.packed ? "in format " + q.packed->format().name : "unquantized");
      }
    return finish_report(rep, timer);
  }
  Activations acts;
  if (method.needs_calibration) {
    const CalibSet calib = load_calibration(tok, cfg.calib_file, cfg.nsamples, cfg.seqlen, cfg.seed);
    rep.calib_sha256 = calib.sha256;
    rep.calib_stream_tokens = calib.stream_tokens;
    const int T = method.calib_tokens ? method.calib_tokens(cfg) : cfg.seqlen;
    // Leaves none of the embedding table resident: it is not read again here (a tied head is not run).
    acts = embed_windows(model, calib, T, parse_act_storage(cfg.calib_acts), cfg.spill_dir);
  }

  // Finished layers are moved here, so quantized layers do not pile up in RAM while the next are computed
  // (16 × 32 MiB for a 1B model at 4 bits; 4 GiB for an 8B one).
  std::optional<ScratchFile> scratch;
  try {
    scratch.emplace(cfg.spill_dir);
  } catch (const Error& e) {
    fail("{} (quantized layers are kept there; choose another with --spill-dir or TMPDIR)", e.what());
  }
  Progress progress(fmt::format("{} w{}{}", cfg.method, cfg.wbits,
                                cfg.group != kPerChannel ? fmt::format("g{}", cfg.group) : ""),
                    uint64_t(L), "layer", cfg.quiet);
  for (int l = 0; l < L; ++l) {
    Timer lt;
    LayerReport lr;
    lr.layer = l;
    std::vector<Linear> originals;  // keeps the source weights alive until their pages are released below
    for (LinearKind k : kAllLinears) originals.push_back(model.linear(l, k));
    LayerJob job{model, l, cfg, method.needs_calibration ? &acts : nullptr, rep, lr};
    method.quantize_layer(job);
    for (const Linear& o : originals) release_mapped_pages(o.dense.data, dense_bytes(o));
    for (LinearKind k : kAllLinears) {
      const Linear& q = model.linear(l, k);
      if (!q.packed) fail("method {} left {} unquantized", method.name, linear_tensor_name(l, k));
      if (q.packed->format().name != method.format)
        fail("method {} wrote {} in format {}, not its declared {}", method.name, linear_tensor_name(l, k),
             q.packed->format().name, method.format);
      install_linear(model, l, k, spill_weight(*scratch, *q.packed));
    }
    release_free_memory();  // the layer's freed work buffers, so the next layer's start from a trimmed heap
    lr.seconds = lt.seconds();
    rep.layers.push_back(lr);
    progress.add(1);
  }
  progress.finish();
  return finish_report(rep, timer);
}

Json quantization_config_json(const QuantConfig& q, const QuantReport& rep, const std::string& source_model) {
  const Method& m = method_or_fail(q.method);
  Json qc = {{"quant_method", q.method}, {"bits", q.wbits}, {"group_size", q.group}};
  for (const MethodOption& o : m.options) qc[o.json_key()] = q.opt<Json>(o.name);
  qc.update({{"format", m.format},
             {"bits_per_weight", rep.bits_per_weight},
             {"paper_bits_per_weight", rep.paper_bits},
             {"source_model", source_model},
             {"lowbit_version", LOWBIT_VERSION}});
  if (m.needs_calibration)
    qc["calibration"] = {{"file", q.calib_file},   {"sha256", rep.calib_sha256},
                         {"nsamples", q.nsamples}, {"seqlen", q.seqlen},
                         {"seed", q.seed},         {"activations", q.calib_acts}};
  else if (!rep.calib_sha256.empty())  // a trained method that chose to read the calibration text
    qc["calibration"] = {{"file", q.calib_file}, {"sha256", rep.calib_sha256}, {"seed", q.seed}};
  return qc;
}

void set_activation_bits(LlamaModel& model, int abits) {
  auto q = std::make_shared<const PerTokenQuant>(abits);  // checks the range
  for (int l = 0; l < model.config().n_layer; ++l)
    for (LinearKind k : kAllLinears) {
      Linear lin = model.linear(l, k);
      lin.input = q;
      model.set_linear(l, k, std::move(lin));
    }
}

}  // namespace lowbit

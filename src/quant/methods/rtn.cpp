#include "quant/methods/rtn.h"

#include "core/error.h"
#include "core/parallel.h"
#include "quant/quantize.h"

namespace lowbit {

std::shared_ptr<const AffineWeight> quantize_rtn(const float* w, int64_t rows, int64_t cols,
                                                 const QuantSpec& spec, Granularity gran, int64_t group_size,
                                                 float* fake) {
  if (gran != Granularity::Group) group_size = cols;
  check_quant_shape(spec.bits, group_size, cols, "rtn");
  if (group_size <= 0) fail("rtn: group size must be positive");
  const int maxq = spec.maxq();
  const int64_t G = cols / group_size;
  AffineParams tensor_params;
  if (gran == Granularity::Tensor) tensor_params = find_params(w, rows * cols, spec);
  PackedBuilder pb(spec.bits, rows, cols, group_size, false);
  parallel_for(
      rows,
      [&](int64_t r) {
        for (int64_t g = 0; g < G; ++g) {
          const float* x = w + r * cols + g * group_size;
          const AffineParams p =
              gran == Granularity::Tensor ? tensor_params : find_params(x, group_size, spec);
          pb.set_params(r, g, p);
          for (int64_t j = 0; j < group_size; ++j) {
            const uint32_t q = quantize_value(x[j], p, maxq);
            pb.set_code(r, g * group_size + j, q);
            if (fake) fake[r * cols + g * group_size + j] = dequantize_value(q, p);
          }
        }
      },
      16, worth_parallel(4.0 * double(rows) * double(cols)));
  return pb.finish();
}

// --- The method: every linear of a layer on its own, no calibration. ---

namespace {

void rtn_layer(LayerJob& job) {
  const QuantConfig& cfg = job.cfg;
  const QuantSpec spec = affine_spec(cfg);
  const Granularity gran = cfg.group == kPerChannel ? Granularity::Channel : Granularity::Group;
  quantize_each_linear(job, [&](const std::vector<float>& w, int64_t rows, int64_t cols) {
    return quantize_rtn(w.data(), rows, cols, spec, gran, cfg.group);
  });
}

}  // namespace

const Method& rtn_method() {
  static const Method m = [] {
    Method m;
    m.name = "rtn";
    m.label = "RTN";
    m.summary = "round to nearest, every weight on its own (no calibration)";
    m.format = "affine";
    m.options = {sym_option(), mse_option()};
    m.quantize_layer = rtn_layer;
    return m;
  }();
  return m;
}

}  // namespace lowbit

#include "quant/methods/pbllm.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel.h"
#include "kernels/ops.h"
#include "quant/primitives.h"
#include "quant/quantize.h"
#include "quant/sequential.h"

namespace lowbit {

double pbllm_paper_bits(double low_frac, int high_bits) {
  const double r = 1.0 - low_frac;
  return (1.0 - r) * 1.0 + r * double(high_bits);
}

PbllmResult pbllm_quantize(const float* w_in, int64_t rows, int64_t cols, std::vector<float> H,
                           const PbllmOptions& o, std::string_view name) {
  const int64_t gs = o.group_size;
  if (!(o.low_frac > 0 && o.low_frac < 1))
    fail("{}: pbllm low_frac {} must be inside (0, 1) (the fraction of each group binarized)", name,
         o.low_frac);
  if (gs <= 0 || gs % 32 != 0 || gs > kPbllmMaxGroup || cols % gs != 0)
    fail("{}: pbllm group {} must be a multiple of 32, at most {}, dividing the {} input columns", name, gs,
         kPbllmMaxGroup, cols);
  if (o.high_bits < 2 || o.high_bits > 8) fail("{}: pbllm high_bit {} is outside 2..8", name, o.high_bits);
  LOWBIT_ASSERT(rows > 0 && H.size() == size_t(cols * cols));
  for (float h : H)
    if (!std::isfinite(h)) fail("{}: Hessian contains NaN/Inf (non-finite calibration activations?)", name);
  const int64_t G = cols / gs;
  const float maxq = float((1 << o.high_bits) - 1);
  std::vector<float> W(w_in, w_in + rows * cols);
  PbllmResult res;

  // 1. The salient grid of each row, from the whole original row (GPTQ's Quantizer: the range holds 0).
  std::vector<float> S(static_cast<size_t>(rows)), Z(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const float* wr = &W[size_t(r * cols)];
    float lo, hi;
    zero_inclusive_range(wr, cols, &lo, &hi);
    S[size_t(r)] = (hi - lo) / maxq;
    Z[size_t(r)] = std::nearbyint(-lo / S[size_t(r)]);
  }

  // 2. Dead columns, then U with (H + λI)⁻¹ = UᵀU.
  fix_dead_columns(H, W.data(), rows, cols);
  res.damp_used = hessian_inverse_factor(H, cols, o.damp, o.max_damp_retries, name);
  const std::vector<float> U = std::move(H);

  // 3. Masks per column group over all rows: the k-th smallest salience is the threshold (upstream
  //    sort(...)[int(numel·low_frac)]); at or below it, binarized.
  res.salient.assign(size_t(rows * cols), 0);
  {
    const int64_t numel = rows * gs;
    const auto k = int64_t(double(numel) * o.low_frac);
    std::vector<float> sal(static_cast<size_t>(numel)), sorted(static_cast<size_t>(numel));
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < gs; ++j) {
          const int64_t c = g * gs + j;
          const float v = W[size_t(r * cols + c)], d = U[size_t(c * cols + c)];
          sal[size_t(r * gs + j)] = o.hessian_metric ? (v * v) / (d * d) : std::fabs(v);
        }
      sorted = sal;
      std::nth_element(sorted.begin(), sorted.begin() + k, sorted.end());
      const float thresh = sorted[size_t(k)];
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < gs; ++j)
          res.salient[size_t(r * cols + g * gs + j)] = !(sal[size_t(r * gs + j)] <= thresh);
    }
  }

  // 4. μ, α of each (row, group) from W·mask over all the group's columns, rounded to fp16 (as stored).
  std::vector<float> mu(size_t(rows * G)), alpha(size_t(rows * G));
  parallel_for(
      rows,
      [&](int64_t r) {
        for (int64_t g = 0; g < G; ++g) {
          const float* wr = &W[size_t(r * cols + g * gs)];
          const uint8_t* sr = &res.salient[size_t(r * cols + g * gs)];
          double s = 0;
          for (int64_t j = 0; j < gs; ++j) s += sr[j] ? 0.0f : wr[j];
          const float m = float(s / double(gs));
          double a = 0;
          for (int64_t j = 0; j < gs; ++j) a += std::fabs((sr[j] ? 0.0f : wr[j]) - m);
          mu[size_t(r * G + g)] = round_to_f16(m);
          alpha[size_t(r * G + g)] = round_to_f16(float(a / double(gs)));
        }
      },
      16, worth_parallel(4.0 * double(rows) * double(cols)));

  // 5. GPTQ's column loop with the two quantizers.
  std::vector<uint8_t> sign(size_t(rows * cols), 0), codes(size_t(rows * cols), 0);
  std::vector<double> row_loss(static_cast<size_t>(rows), 0.0);
  const int64_t B = gs % 128 == 0 ? 128 : gs;  // upstream asserts group % block == 0
  std::vector<float> W1(size_t(rows * B)), Err1(size_t(rows * B));
  for (int64_t i1 = 0; i1 < cols; i1 += B) {
    const int64_t i2 = std::min(i1 + B, cols), cnt = i2 - i1, g = i1 / gs;
    parallel_for(
        rows,
        [&](int64_t r) {
          float* w1 = &W1[size_t(r * cnt)];
          float* e1 = &Err1[size_t(r * cnt)];
          std::copy(&W[size_t(r * cols + i1)], &W[size_t(r * cols + i2)], w1);
          const float m = mu[size_t(r * G + g)], a = alpha[size_t(r * G + g)];
          const float s = S[size_t(r)], z = Z[size_t(r)];
          for (int64_t i = 0; i < cnt; ++i) {
            const int64_t col = i1 + i;
            const size_t at = size_t(r * cols + col);
            const float* u = &U[size_t(col * cols)];
            const float x = w1[i];
            float q;
            if (res.salient[at]) {
              const float c = std::clamp(std::nearbyint(x / s) + z, 0.0f, maxq);
              codes[at] = uint8_t(c);
              q = s * (c - z);
            } else {
              const bool b = x - m >= 0;
              sign[at] = b;
              q = m + (b ? a : -a);
            }
            const float err = (x - q) / u[col];
            row_loss[size_t(r)] += double(err) * err;
            e1[i] = err;
            for (int64_t j = i + 1; j < cnt; ++j) w1[j] -= err * u[i1 + j];
          }
        },
        8, worth_parallel(double(rows) * double(cnt) * double(cnt)));
    if (i2 < cols)  // W[:, i2:] -= Err1 (rows, cnt) · U[i1:i2, i2:]
      ops::gemm(false, rows, cols - i2, cnt, -1.0f, Err1.data(), cnt, &U[size_t(i1 * cols + i2)], cols, 1.0f,
                &W[size_t(i2)], cols);
  }
  for (double l : row_loss) res.loss += l / 2;
  int64_t n_sal = 0;
  for (uint8_t v : res.salient) n_sal += v;
  res.salient_fraction = double(n_sal) / double(rows * cols);
  res.weight = make_pbllm(rows, cols, gs, res.salient.data(), sign.data(), codes.data(), mu.data(),
                          alpha.data(), S.data(), Z.data());
  return res;
}

namespace {

void pbllm_layer(LayerJob& job) {
  const QuantConfig& cfg = job.cfg;
  PbllmOptions opt;
  opt.low_frac = cfg.opt<double>("low_frac");
  opt.high_bits = int(cfg.opt<int64_t>("high_bit"));
  opt.group_size = cfg.group;
  opt.hessian_metric = cfg.opt<std::string>("salient_metric") == "hessian";
  opt.damp = cfg.opt<double>("damp");
  quantize_layer_with_hessians(job, cfg.opt<bool>("true_sequential"), false, [&](LinearJob& lj) {
    PbllmResult p = pbllm_quantize(lj.w.data(), lj.rows, lj.cols, std::move(lj.H), opt, lj.name);
    if (!lj.dump_dir.empty()) {
      write_npy(lj.dump_dir / "mask.npy", p.salient.data(), 1, {lj.rows, lj.cols}, "|u1");
      std::ofstream(lj.dump_dir / "meta.json") << Json{
          {"method", "pbllm"},
          {"low_frac", opt.low_frac},
          {"high_bit", opt.high_bits},
          {"group", opt.group_size},
          {"salient_metric", opt.hessian_metric ? "hessian" : "magnitude"},
          {"damp", opt.damp},
          {"block", 128},
          {"binpar", "fp16"}}.dump();
    }
    LinearResult r;
    r.weight = std::move(p.weight);
    r.loss = p.loss;
    r.damp = p.damp_used;
    return r;
  });
}

}  // namespace

const Method& pbllm_method() {
  static const Method m = [] {
    Method m;
    m.name = "pbllm";
    m.label = "PB-LLM";
    m.summary =
        "PB-LLM (Shang et al. 2023): partial binarization, salient weights at 8 bits, GPTQ error feedback";
    m.needs_calibration = true;
    m.min_bits = 1;
    m.max_bits = 1;
    m.format = "pbllm";
    m.group_multiple = 32;
    m.max_group = int(kPbllmMaxGroup);
    MethodOption low_frac{
        "low_frac", OptionType::Number,
        0.9,        "fraction of each group binarized (0.9: the paper's 1.7 bits, 6/7: 2 bits)",
        0,          1};
    low_frac.min_exclusive = low_frac.max_exclusive = true;
    MethodOption metric{"salient_metric", OptionType::String, "hessian",
                        "salience: hessian (w^2 / [H^-1]_jj^2) or magnitude (|w|)"};
    metric.choices = {"hessian", "magnitude"};
    MethodOption damp{"damp", OptionType::Number, 0.01, "relative dampening of H's diagonal", 0};
    damp.min_exclusive = true;
    m.options = {
        low_frac,
        {"high_bit", OptionType::Int, int64_t(8), "bits of the salient weights (per-row grid)", 2, 8},
        metric,
        damp,
        {"true_sequential", OptionType::Bool, false, "q/k/v, then o, then gate/up, then down"}};
    m.quantize_layer = pbllm_layer;
    m.paper_bits = [](const QuantConfig& cfg, const QuantReport&) {
      return pbllm_paper_bits(cfg.opt<double>("low_frac"), int(cfg.opt<int64_t>("high_bit")));
    };
    return m;
  }();
  return m;
}

}  // namespace lowbit

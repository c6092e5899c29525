#include "quant/methods/gptq.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/parallel.h"
#include "kernels/ops.h"
#include "quant/calib.h"
#include "quant/quantize.h"
#include "quant/sequential.h"

namespace lowbit {

GptqResult gptq_quantize(const float* w_in, int64_t rows, int64_t cols, std::vector<float> H,
                         const GptqOptions& o, std::string_view name) {
  check_quant_shape(o.spec.bits, o.group_size, cols, name);
  LOWBIT_ASSERT(rows > 0 && cols > 0 && H.size() == size_t(cols * cols) && o.block_size > 0);
  for (float h : H)
    if (!std::isfinite(h)) fail("{}: Hessian contains NaN/Inf (non-finite calibration activations?)", name);
  const int maxq = o.spec.maxq();
  const bool grouped = o.group_size > 0;
  const int64_t gs = grouped ? o.group_size : cols;
  const int64_t G = cols / gs;
  std::vector<float> W(w_in, w_in + rows * cols);  // (rows, cols), permuted below with act-order
  GptqResult res;

  std::vector<AffineParams> row_params(static_cast<size_t>(rows));  // current group's (S, Z) of each row
  if (!grouped)
    parallel_for(
        rows, [&](int64_t r) { row_params[size_t(r)] = find_params(&W[size_t(r * cols)], cols, o.spec); }, 16,
        worth_parallel(4.0 * double(rows) * double(cols)));

  res.dead_columns = fix_dead_columns(H, W.data(), rows, cols);

  std::vector<AffineParams> static_params;  // (G, rows)
  if (grouped && o.static_groups) {
    static_params.resize(size_t(G * rows));
    parallel_for(
        rows,
        [&](int64_t r) {
          for (int64_t g = 0; g < G; ++g)
            static_params[size_t(g * rows + r)] = find_params(&W[size_t(r * cols + g * gs)], gs, o.spec);
        },
        16, worth_parallel(4.0 * double(rows) * double(cols)));
  }

  // perm[j] = original column processed j-th.
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  if (o.act_order) {
    // Stable, so equal diagonals keep their natural order (torch.argsort is not stable; ties are rare).
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return H[size_t(a * cols + a)] > H[size_t(b * cols + b)]; });
    std::vector<float> Wp(W.size()), Hp(H.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j) Wp[size_t(r * cols + j)] = W[size_t(r * cols + perm[size_t(j)])];
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < cols; ++j)
        Hp[size_t(i * cols + j)] = H[size_t(perm[size_t(i)] * cols + perm[size_t(j)])];
    W.swap(Wp);
    H.swap(Hp);
  }

  res.damp_used = hessian_inverse_factor(H, cols, o.damp, o.max_damp_retries, name);
  const std::vector<float> U = std::move(H);  // its upper triangle: H⁻¹ = UᵀU

  PackedBuilder pb(o.spec.bits, rows, cols, gs, o.act_order && grouped && !o.static_groups);
  if (o.act_order && grouped && !o.static_groups) {
    int32_t* g_idx = pb.g_idx();
    for (int64_t j = 0; j < cols; ++j) g_idx[perm[size_t(j)]] = int32_t(j / gs);
  }
  if (!grouped)
    for (int64_t r = 0; r < rows; ++r) pb.set_params(r, 0, row_params[size_t(r)]);

  std::vector<double> row_loss(size_t(rows), 0.0);
  const int64_t B = o.block_size;
  std::vector<float> W1(size_t(rows * B)), Err1(size_t(rows * B));  // (rows, cnt)
  for (int64_t i1 = 0; i1 < cols; i1 += B) {
    const int64_t i2 = std::min(i1 + B, cols), cnt = i2 - i1;
    // Rows are independent inside a block: each row's error only updates that row.
    parallel_for(
        rows,
        [&](int64_t r) {
          float* w1 = &W1[size_t(r * cnt)];
          float* e1 = &Err1[size_t(r * cnt)];
          const float* wr = &W[size_t(r * cols)];
          std::copy(wr + i1, wr + i2, w1);
          AffineParams& p = row_params[size_t(r)];
          for (int64_t i = 0; i < cnt; ++i) {
            const int64_t col = i1 + i;
            if (grouped) {
              if (!o.static_groups) {
                if (col % gs == 0) {
                  p = find_params(wr + col, gs, o.spec);  // W as of this block's start, like the reference
                  pb.set_params(r, col / gs, p);
                }
              } else {
                p = static_params[size_t((perm[size_t(col)] / gs) * rows + r)];
              }
            }
            const float* u = &U[size_t(col * cols)];  // row col of U
            const float d = u[col];
            const float x = w1[i];
            const uint32_t q = quantize_value(x, p, maxq);
            pb.set_code(r, perm[size_t(col)], q);
            const float err = (x - dequantize_value(q, p)) / d;
            row_loss[size_t(r)] += double(err) * err;
            e1[i] = err;
            for (int64_t j = i + 1; j < cnt; ++j) w1[j] -= err * u[i1 + j];
          }
        },
        8, worth_parallel(double(rows) * double(cnt) * double(cnt)));
    // W[:, i2:] -= Err1 (rows, cnt) · U[i1:i2, i2:] (cnt, cols − i2)
    if (i2 < cols)
      ops::gemm(false, rows, cols - i2, cnt, -1.0f, Err1.data(), cnt, &U[size_t(i1 * cols + i2)], cols, 1.0f,
                &W[size_t(i2)], cols);
  }
  if (grouped && o.static_groups)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < G; ++g) pb.set_params(r, g, static_params[size_t(g * rows + r)]);

  for (double l : row_loss) res.loss += l / 2;
  res.weight = pb.finish();
  return res;
}

// --- The method: GPTQ's llama.py sequential driver over the layer's linears. ---

namespace {

void gptq_layer(LayerJob& job) {
  const QuantConfig& cfg = job.cfg;
  GptqOptions opt;
  opt.spec = affine_spec(cfg);
  opt.group_size = cfg.group;
  opt.act_order = cfg.opt<bool>("act_order");
  opt.static_groups = cfg.opt<bool>("static_groups");
  opt.damp = cfg.opt<double>("damp");
  quantize_layer_with_hessians(job, cfg.opt<bool>("true_sequential"), false, [&](LinearJob& lj) {
    GptqResult g = gptq_quantize(lj.w.data(), lj.rows, lj.cols, std::move(lj.H), opt, lj.name);
    LinearResult r;
    r.weight = std::move(g.weight);
    r.loss = g.loss;
    r.damp = g.damp_used;
    return r;
  });
}

}  // namespace

const Method& gptq_method() {
  static const Method m = [] {
    Method m;
    m.name = "gptq";
    m.label = "GPTQ";
    m.summary = "GPTQ (Frantar et al. 2022): column-wise quantization with Hessian error feedback";
    m.needs_calibration = true;
    m.format = "affine";
    MethodOption act_order{"act_order", OptionType::Bool, false,
                           "quantize columns by decreasing Hessian diagonal"};
    act_order.config_key = "desc_act";
    MethodOption damp{"damp", OptionType::Number, 0.01, "relative dampening of H's diagonal", 0};
    damp.min_exclusive = true;
    damp.config_key = "damp_percent";
    m.options = {sym_option(),
                 mse_option(),
                 act_order,
                 {"static_groups", OptionType::Bool, false, "group parameters fixed before act-order"},
                 {"true_sequential", OptionType::Bool, false, "q/k/v, then o, then gate/up, then down"},
                 damp};
    m.quantize_layer = gptq_layer;
    return m;
  }();
  return m;
}

}  // namespace lowbit

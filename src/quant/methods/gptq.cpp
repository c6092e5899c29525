#include "quant/methods/gptq.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "core/error.h"
#include "core/lapack.h"
#include "core/parallel.h"
#include "kernels/ops.h"
#include "quant/calib.h"
#include "quant/quantize.h"

namespace lowbit {

namespace {

// In place: H (n, n) row-major symmetric -> its row-major upper triangle holds U with H⁻¹ = UᵀU (the
// reference's cholesky(cholesky_inverse(cholesky(H)), upper=True)). A symmetric row-major matrix is its own
// column-major transpose and the column-major lower triangle is the row-major upper one, so three
// column-major 'L' calls do it: potrf (H = LLᵀ), potri (H⁻¹ from L), potrf again (H⁻¹ = L'L'ᵀ, U = L'ᵀ sits
// in the row-major upper triangle). Returns false when H is not (numerically) positive definite.
bool upper_cholesky_of_inverse(std::vector<float>& H, int64_t n) {
  const int N = int(n);
  if (lapack::cholesky_upper(H.data(), N) != 0) return false;
  if (lapack::cholesky_inverse_upper(H.data(), N) != 0) return false;
  if (lapack::cholesky_upper(H.data(), N) != 0) return false;
  for (int64_t i = 0; i < n; ++i)  // the factor is what the algorithm reads; anything non-finite is a failure
    for (int64_t j = i; j < n; ++j)
      if (!std::isfinite(H[size_t(i * n + j)])) return false;
  return true;
}

}  // namespace

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

  for (int64_t i = 0; i < cols; ++i) {
    float& hii = H[size_t(i * cols + i)];
    if (hii == 0) {
      hii = 1;
      for (int64_t r = 0; r < rows; ++r) W[size_t(r * cols + i)] = 0;
      ++res.dead_columns;
    }
  }

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

  double mean_diag = 0;
  for (int64_t i = 0; i < cols; ++i) mean_diag += H[size_t(i * cols + i)];
  mean_diag /= double(cols);
  // Factorized in place (no second cols² buffer: 256 MiB for a 1B model's down_proj): the LAPACK calls write
  // only the upper triangle, so after a failure the strict lower one still holds H to restore it from.
  std::vector<float> diag(static_cast<size_t>(cols));
  for (int64_t i = 0; i < cols; ++i) diag[size_t(i)] = H[size_t(i * cols + i)];
  double damp = o.damp;
  for (int attempt = 0;; ++attempt) {
    const float lambda = float(damp * mean_diag);
    for (int64_t i = 0; i < cols; ++i) H[size_t(i * cols + i)] = diag[size_t(i)] + lambda;
    if (upper_cholesky_of_inverse(H, cols)) break;
    if (attempt >= o.max_damp_retries)
      fail("{}: Hessian is not positive definite even with dampening {} x mean(diag H) (started at {})", name,
           damp, o.damp);
    damp *= 10;
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = i + 1; j < cols; ++j) H[size_t(i * cols + j)] = H[size_t(j * cols + i)];
  }
  res.damp_used = damp;
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

// Hessians from the block with every earlier group already quantized (true-sequential) or all from the
// full-precision block; then the block's outputs with the quantized weights become the next inputs.
void gptq_layer(LayerJob& job) {
  using K = LinearKind;
  const QuantConfig& cfg = job.cfg;
  LlamaModel& model = job.model;
  const int layer = job.layer;
  std::vector<std::vector<K>> groups;
  if (cfg.opt<bool>("true_sequential"))
    groups = {{K::K, K::V, K::Q}, {K::O}, {K::Up, K::Gate}, {K::Down}};
  else
    groups = {{K::Q, K::K, K::V, K::O, K::Gate, K::Up, K::Down}};
  GptqOptions opt;
  opt.spec = affine_spec(cfg);
  opt.group_size = cfg.group;
  opt.act_order = cfg.opt<bool>("act_order");
  opt.static_groups = cfg.opt<bool>("static_groups");
  opt.damp = cfg.opt<double>("damp");
  for (const auto& group : groups) {
    std::set<InputSite> sites;
    for (K k : group) sites.insert(input_site(k));
    HessianObserver obs(std::vector<InputSite>(sites.begin(), sites.end()));
    run_block(model, layer, *job.acts, &obs, false);
    job.report.hessian_seconds += obs.seconds();
    job.report.hessian_flops += obs.flops();
    for (size_t i = 0; i < group.size(); ++i) {
      const K k = group[i];
      const Linear& lin = model.linear(layer, k);
      const std::vector<float> w = linear_to_f32(lin);
      // The last linear reading a site takes its H instead of copying it.
      const bool last = std::none_of(group.begin() + long(i) + 1, group.end(),
                                     [&](K later) { return input_site(later) == input_site(k); });
      GptqResult g = gptq_quantize(w.data(), lin.rows(), lin.cols(),
                                   last ? obs.take_hessian(input_site(k)) : obs.hessian(input_site(k)), opt,
                                   linear_tensor_name(layer, k));
      LinearReport r = linear_report(layer, k, w, *g.weight);
      r.loss = g.loss;
      r.damp = g.damp_used;
      job.report.linears.push_back(r);
      install_linear(model, layer, k, std::move(g.weight));
    }
  }
  run_block(model, layer, *job.acts, nullptr, true);
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

#include "quant/methods/billm.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>

#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel.h"
#include "kernels/ops.h"
#include "quant/primitives.h"
#include "quant/quantize.h"
#include "quant/sequential.h"

namespace lowbit {

namespace {

constexpr int kUpLim = 50;  // bigptq.py's structural_guassian_distribution(…, up_lim = 50): k = 1..49

// Upstream's high_order_residual of the n values v of one row's mask, `order` times, with sign(0) = 0, for
// the searches: returns Σ (v − q)², q the binarized values.
double binarize_error(const float* v, int64_t n, int order, float* s /* n scratch */) {
  if (n == 0) return 0;
  std::fill(s, s + n, 0.0f);
  for (int o = 0; o < order; ++o) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += v[i] - s[i];
    const float mu = float(sum / double(n));
    double dev = 0;
    for (int64_t i = 0; i < n; ++i) dev += std::fabs(v[i] - s[i] - mu);
    const float alpha = float(dev / double(n));
    for (int64_t i = 0; i < n; ++i) {
      const float r = v[i] - s[i] - mu;
      s[i] += (r > 0 ? alpha : r < 0 ? -alpha : 0.0f) + mu;
    }
  }
  double e = 0;
  for (int64_t i = 0; i < n; ++i) e += double(v[i] - s[i]) * double(v[i] - s[i]);
  return e;
}

// One binarization of the stored kind over n values: μ, α rounded to fp16 (μ with it before α, as upstream
// computes α from μ), the sign of x − μ as a bit (x = μ gives 1).
struct Bin {
  float mu = 0, alpha = 0;
};
Bin binarize_fp16(const float* v, int64_t n) {
  if (n == 0) return {};
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += v[i];
  const float mu = float(sum / double(n));
  double dev = 0;
  for (int64_t i = 0; i < n; ++i) dev += std::fabs(v[i] - mu);
  return {round_to_f16(mu), round_to_f16(float(dev / double(n)))};
}

// Steps 1–3 on one block: T (rows, cnt) → mask codes (rows, cnt) 0/1/2 and the salient column count.
int64_t search_block(const std::vector<float>& T, int64_t rows, int64_t cnt, uint8_t* codes, int64_t ldc) {
  // Step 2: columns by Σ|T| descending (ties to the lower column, as a stable sort).
  std::vector<double> score(size_t(cnt), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cnt; ++j) score[size_t(j)] += std::fabs(T[size_t(r * cnt + j)]);
  std::vector<int64_t> order(static_cast<size_t>(cnt));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return score[size_t(a)] > score[size_t(b)]; });
  std::vector<float> Tp(T.size());  // T with its columns in that order: salient = a prefix of every row
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cnt; ++j) Tp[size_t(r * cnt + j)] = T[size_t(r * cnt + order[size_t(j)])];
  const int64_t kmax = std::min<int64_t>(kUpLim - 1, cnt - 1);
  std::vector<double> err_k(size_t(kmax + 1), 0.0);
  parallel_for(
      kmax,
      [&](int64_t i) {
        const int64_t k = i + 1;
        std::vector<float> s(static_cast<size_t>(cnt));
        double e = 0;
        for (int64_t r = 0; r < rows; ++r) {
          const float* row = &Tp[size_t(r * cnt)];
          e += binarize_error(row, k, 2, s.data()) + binarize_error(row + k, cnt - k, 2, s.data());
        }
        err_k[size_t(k)] = e;
      },
      1, worth_parallel(16.0 * double(rows) * double(cnt) * double(kmax)));
  int64_t kbest = 1;
  for (int64_t k = 2; k <= kmax; ++k)
    if (err_k[size_t(k)] < err_k[size_t(kbest)]) kbest = k;
  std::vector<uint8_t> salient(size_t(cnt), 0);
  for (int64_t j = 0; j < kbest; ++j) salient[size_t(order[size_t(j)])] = 1;

  // Step 3: the split. |T| of non-salient entries (salient ones count as zeros in the quantiles), sorted.
  std::vector<float> a(T.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cnt; ++j)
      a[size_t(r * cnt + j)] = salient[size_t(j)] ? 0.0f : std::fabs(T[size_t(r * cnt + j)]);
  std::vector<float> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  const std::vector<float>& levels = billm_split_levels();
  const auto n_p = int64_t(levels.size());
  std::vector<float> p(static_cast<size_t>(n_p));
  for (int64_t i = 0; i < n_p; ++i) p[size_t(i)] = float(billm_quantile(sorted, levels[size_t(i)]));
  // The salient columns' second-order error is the same for every p; it only shifts the error, so the
  // comparison leaves it out (upstream adds it to every candidate's MSE).
  std::vector<double> err_p(static_cast<size_t>(n_p), 0.0);
  parallel_for(
      n_p,
      [&](int64_t i) {
        std::vector<float> lo(static_cast<size_t>(cnt)), hi(static_cast<size_t>(cnt)),
            s(static_cast<size_t>(cnt));
        double e = 0;
        for (int64_t r = 0; r < rows; ++r) {
          int64_t nl = 0, nh = 0;
          for (int64_t j = 0; j < cnt; ++j) {
            if (salient[size_t(j)]) continue;
            const float t = T[size_t(r * cnt + j)];
            (a[size_t(r * cnt + j)] < p[size_t(i)] ? lo[size_t(nl++)] : hi[size_t(nh++)]) = t;
          }
          e += binarize_error(lo.data(), nl, 1, s.data()) + binarize_error(hi.data(), nh, 1, s.data());
        }
        err_p[size_t(i)] = e;
      },
      1, worth_parallel(8.0 * double(rows) * double(cnt) * double(n_p)));
  int64_t pbest = 0;
  for (int64_t i = 1; i < n_p; ++i)
    if (err_p[size_t(i)] < err_p[size_t(pbest)]) pbest = i;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cnt; ++j)
      codes[r * ldc + j] = salient[size_t(j)] ? 2 : a[size_t(r * cnt + j)] < p[size_t(pbest)] ? 0 : 1;
  return kbest;
}

}  // namespace

const std::vector<float>& billm_split_levels() {
  static const std::vector<float> levels = torch_linspace_f32(0.10f, 0.90f, 81);
  return levels;
}

double billm_quantile(const std::vector<float>& A, float q) {
  const auto n = int64_t(A.size());
  LOWBIT_ASSERT(n > 0);
  // numpy 1.24's value-based casting: (n − 1)·q with n − 1 a Python int is float32 while n − 1 fits uint16.
  const double v = n - 1 <= 65535 ? double(float(n - 1) * q) : double(n - 1) * double(q);
  if (v >= double(n - 1)) return A[size_t(n - 1)];
  const auto lo = int64_t(std::floor(v));
  const double g = v - double(lo);
  const double d = double(A[size_t(lo + 1)] - A[size_t(lo)]);  // a float32 subtraction
  return g >= 0.5 ? double(A[size_t(lo + 1)]) - d * (1.0 - g) : double(A[size_t(lo)]) + d * g;
}

BillmResult billm_quantize(const float* w_in, int64_t rows, int64_t cols, std::vector<float> H,
                           const BillmOptions& o, std::string_view name) {
  const int64_t gs = o.group_size;
  if (gs < 64 || gs % 32 != 0 || cols % gs != 0)
    fail("{}: billm group {} must be a multiple of 32, at least 64, dividing the {} input columns", name, gs,
         cols);
  LOWBIT_ASSERT(rows > 0 && H.size() == size_t(cols * cols));
  for (float h : H)
    if (!std::isfinite(h)) fail("{}: Hessian contains NaN/Inf (non-finite calibration activations?)", name);
  const int64_t G = cols / gs;
  std::vector<float> W(w_in, w_in + rows * cols);
  BillmResult res;

  // GPTQ's dead columns, then U with (H + λI)⁻¹ = UᵀU.
  fix_dead_columns(H, W.data(), rows, cols);
  res.damp_used = hessian_inverse_factor(H, cols, o.damp, o.max_damp_retries, name);
  const std::vector<float> U = std::move(H);

  res.mask.assign(size_t(rows * cols), 0);
  std::vector<uint8_t> A(size_t(rows * cols)), B(size_t(rows * cols)), salient(size_t(cols), 0);
  std::vector<float> par(size_t(rows * G * 7)), T(size_t(rows * gs)), Err1(size_t(rows * gs));
  std::vector<double> row_loss(static_cast<size_t>(rows), 0.0);
  for (int64_t g = 0; g < G; ++g) {
    const int64_t st = g * gs;
    // Step 1.
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < gs; ++j) {
        const float v = W[size_t(r * cols + st + j)], d = U[size_t((st + j) * cols + st + j)];
        T[size_t(r * gs + j)] = o.hessian_metric ? (v * v) / (d * d) : v;
      }
    // Steps 2–3.
    res.salient_cols += search_block(T, rows, gs, &res.mask[size_t(st)], cols);
    for (int64_t j = 0; j < gs; ++j) salient[size_t(st + j)] = res.mask[size_t(st + j)] == 2;
    // Step 4: each row's three masks binarized (the salient one twice), then compensation's errors.
    parallel_for(
        rows,
        [&](int64_t r) {
          const float* w1 = &W[size_t(r * cols + st)];
          const uint8_t* m = &res.mask[size_t(r * cols + st)];
          float* pr = &par[size_t((r * G + g) * 7)];
          std::vector<float> v(static_cast<size_t>(gs));
          for (int code = 0; code < 2; ++code) {  // the two non-salient groups
            int64_t n = 0;
            for (int64_t j = 0; j < gs; ++j)
              if (m[j] == code) v[size_t(n++)] = w1[j];
            const Bin b = binarize_fp16(v.data(), n);
            pr[2 * code] = b.mu, pr[2 * code + 1] = b.alpha;
          }
          // Salient: the first binarization's residual, binarized again.
          int64_t n = 0;
          for (int64_t j = 0; j < gs; ++j)
            if (m[j] == 2) v[size_t(n++)] = w1[j];
          const Bin b1 = binarize_fp16(v.data(), n);
          for (int64_t i = 0; i < n; ++i)
            v[size_t(i)] -= b1.mu + (v[size_t(i)] - b1.mu >= 0 ? b1.alpha : -b1.alpha);
          const Bin b2 = binarize_fp16(v.data(), n);
          pr[4] = round_to_f16(b1.mu + b2.mu), pr[5] = b1.alpha, pr[6] = b2.alpha;
          // The bits: the sign of x − μ per group; the salient second bit from the residual.
          float* e1 = &Err1[size_t(r * gs)];
          uint16_t p16[7];
          for (int i = 0; i < 7; ++i) p16[i] = f32_to_f16(pr[i]);
          float lv[8];
          billm_levels(p16, lv);
          for (int64_t j = 0; j < gs; ++j) {
            const size_t at = size_t(r * cols + st + j);
            const float x = w1[j];
            bool a, bb;
            if (m[j] == 2) {
              a = x - b1.mu >= 0;
              const float res1 = x - (b1.mu + (a ? b1.alpha : -b1.alpha));
              bb = res1 - b2.mu >= 0;
            } else {
              const float mu = pr[2 * m[j]];
              a = x - mu >= 0;
              bb = m[j] == 1;
            }
            A[at] = a, B[at] = bb;
            const float q = lv[int(a) + 2 * int(bb) + 4 * int(m[j] == 2)];
            const float err = (x - q) / U[size_t((st + j) * cols + st + j)];
            row_loss[size_t(r)] += double(err) * err;
            e1[j] = err;
          }
        },
        8, worth_parallel(16.0 * double(rows) * double(gs)));
    // Step 5: W[:, ed:] −= Err1 (rows, gs) · U[st:ed, ed:].
    const int64_t ed = st + gs;
    if (ed < cols)
      ops::gemm(false, rows, cols - ed, gs, -1.0f, Err1.data(), gs, &U[size_t(st * cols + ed)], cols, 1.0f,
                &W[size_t(ed)], cols);
  }
  for (double l : row_loss) res.loss += l / 2;
  res.paper_bits = 1.0 + double(res.salient_cols) / double(cols);
  res.weight = make_billm(rows, cols, gs, salient.data(), A.data(), B.data(), par.data());
  return res;
}

namespace {

void billm_layer(LayerJob& job) {
  const QuantConfig& cfg = job.cfg;
  BillmOptions opt;
  opt.group_size = cfg.group;
  opt.hessian_metric = cfg.opt<std::string>("salient_metric") == "hessian";
  opt.damp = cfg.opt<double>("damp");
  quantize_layer_with_hessians(job, cfg.opt<bool>("true_sequential"), false, [&](LinearJob& lj) {
    BillmResult b = billm_quantize(lj.w.data(), lj.rows, lj.cols, std::move(lj.H), opt, lj.name);
    if (!lj.dump_dir.empty()) {
      write_npy(lj.dump_dir / "mask.npy", b.mask.data(), 1, {lj.rows, lj.cols}, "|u1");
      std::ofstream(lj.dump_dir / "meta.json") << Json{
          {"method", "billm"},
          {"damp", opt.damp},
          {"block", opt.group_size},
          {"salient_metric", opt.hessian_metric ? "hessian" : "magnitude"},
          {"binpar", "fp16"}}.dump();
    }
    LinearResult r;
    r.weight = std::move(b.weight);
    r.loss = b.loss;
    r.damp = b.damp_used;
    r.paper_bits = b.paper_bits;
    return r;
  });
}

}  // namespace

const Method& billm_method() {
  static const Method m = [] {
    Method m;
    m.name = "billm";
    m.label = "BiLLM";
    m.summary =
        "BiLLM (Huang et al. 2024): salient columns binarized twice (residual), the rest split in two "
        "binarized groups, compensation between blocks";
    m.needs_calibration = true;
    m.min_bits = 1;
    m.max_bits = 1;
    m.format = "billm";
    m.group_multiple = 32;
    m.min_group = 64;  // k = 1..49 salient columns needs a wide block (upstream's topk(50) needs 50)
    MethodOption metric{"salient_metric", OptionType::String, "hessian",
                        "salience: hessian (w^2 / [H^-1]_jj^2) or magnitude (w, signed, as upstream)"};
    metric.choices = {"hessian", "magnitude"};
    MethodOption damp{"damp", OptionType::Number, 0.01, "relative dampening of H's diagonal", 0};
    damp.min_exclusive = true;
    m.options = {
        metric, damp, {"true_sequential", OptionType::Bool, false, "q/k/v, then o, then gate/up, then down"}};
    m.quantize_layer = billm_layer;
    // The paper's 1 + salient-column fraction, weighted by each linear's size.
    m.paper_bits = [](const QuantConfig&, const QuantReport& rep) {
      double bits = 0, n = 0;
      for (const LinearReport& r : rep.linears) {
        bits += r.paper_bits * double(r.rows * r.cols);
        n += double(r.rows * r.cols);
      }
      return n > 0 ? bits / n : 1.0;
    };
    return m;
  }();
  return m;
}

}  // namespace lowbit

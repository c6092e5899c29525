#include "quant/methods/awq.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/parallel.h"
#include "kernels/ops.h"
#include "quant/calib.h"
#include "quant/methods/rtn.h"
#include "quant/quantize.h"

namespace lowbit {

namespace {

using Mat = std::vector<float>;
constexpr int64_t kChunk = 1024;  // tokens per GEMM in the searches

// y (n, rows) = x (n, cols) · Wᵀ, W (rows, cols)
void matmul_t(const float* x, int64_t n, int64_t cols, const float* W, int64_t rows, float* y) {
  ops::gemm(true, n, rows, cols, 1.0f, x, cols, W, cols, 0.0f, y, rows);
}

double sq_diff_sum(const float* a, const float* b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = double(a[i]) - double(b[i]);
    s += d * d;
  }
  return s;
}

Granularity granularity(const AwqOptions& o) {
  return o.group_size > 0 ? Granularity::Group : Granularity::Channel;
}

// Q(W·diag(s))·diag(s)⁻¹: the weight the model would use with scales s folded into the previous op.
Mat scaled_fake_quant(const Mat& W, int64_t rows, int64_t cols, const std::vector<float>& s,
                      const AwqOptions& o) {
  Mat ws(W.size()), fq(W.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ws[size_t(r * cols + c)] = W[size_t(r * cols + c)] * s[size_t(c)];
  quantize_rtn(ws.data(), rows, cols, o.spec, granularity(o), o.group_size, fq.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) fq[size_t(r * cols + c)] /= s[size_t(c)];
  return fq;
}

// Tries α = 0, 1/n_grid, ... and returns the best scales; eval(s) is the output MSE with scales s.
template <typename Eval>
std::vector<float> search_scales(const std::vector<float>& mean_abs, const AwqOptions& o, Eval&& eval,
                                 double* best_alpha, double* best_loss) {
  double best = std::numeric_limits<double>::infinity();
  std::vector<float> best_s;
  for (int r = 0; r < o.n_grid; ++r) {
    const double alpha = double(r) / o.n_grid;
    std::vector<float> s = awq_scales(mean_abs, float(alpha));
    const double loss = eval(s);
    if (loss < best) best = loss, best_s = std::move(s), *best_alpha = alpha;
  }
  if (best_s.empty()) fail("AWQ: scale search found no finite output error (non-finite activations?)");
  *best_loss = best;
  return best_s;
}

// The full-precision pass: per-site mean |x|, the inputs the searches and clipping need, and the reference
// outputs of the attention (through o_proj).
struct Capture : BlockObserver {
  int64_t T = 0, tokens = 0, step = 1, window = 0;
  bool keep_o = false;  // full o_proj inputs (o searched) or only the clip subsample
  std::array<std::vector<double>, 4> abs_sum;
  std::array<int64_t, 4> cols{};
  Mat mlp_in, down_in, o_in;  // (tokens, cols), o_in full only when keep_o
  Mat attn_sub, o_sub;        // clip subsamples (n_sub, cols)
  Mat attn_out;               // (tokens, d) = o_proj(attention) in full precision
  const Mat* Wo = nullptr;
  int64_t d = 0;

  int64_t n_sub() const { return (tokens + step - 1) / step; }

  void observe(int, InputSite site, const float* x, int64_t n, int64_t c) override {
    const int si = int(site);
    auto& as = abs_sum[size_t(si)];
    if (as.empty()) as.assign(size_t(c), 0.0), cols[size_t(si)] = c;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < c; ++j) as[size_t(j)] += std::fabs(x[t * c + j]);
    const int64_t t0 = window * T;
    auto keep_all = [&](Mat& m) {
      if (m.empty()) m.resize(size_t(tokens * c));
      std::memcpy(m.data() + t0 * c, x, size_t(n * c) * sizeof(float));
    };
    auto keep_sub = [&](Mat& m) {
      if (m.empty()) m.resize(size_t(n_sub() * c));
      for (int64_t t = 0; t < n; ++t)
        if ((t0 + t) % step == 0)
          std::memcpy(m.data() + (t0 + t) / step * c, x + t * c, size_t(c) * sizeof(float));
    };
    switch (site) {
      case InputSite::AttnIn:
        keep_sub(attn_sub);
        break;
      case InputSite::OIn:
        if (keep_o) keep_all(o_in);
        keep_sub(o_sub);
        if (attn_out.empty()) attn_out.resize(size_t(tokens * d));
        matmul_t(x, n, c, Wo->data(), d, attn_out.data() + t0 * d);
        break;
      case InputSite::MlpIn:
        keep_all(mlp_in);
        break;
      case InputSite::DownIn:
        keep_all(down_in);
        break;
    }
  }

  std::vector<float> mean_abs(InputSite s) const {
    std::vector<float> m(abs_sum[size_t(int(s))].size());
    for (size_t j = 0; j < m.size(); ++j) m[j] = float(abs_sum[size_t(int(s))][j] / double(tokens));
    return m;
  }
};

// Every step-th row of X (n, c).
Mat subsample(const Mat& X, int64_t n, int64_t c, int64_t step) {
  Mat out;
  for (int64_t t = 0; t < n; t += step) out.insert(out.end(), X.begin() + t * c, X.begin() + (t + 1) * c);
  return out;
}

void scale_cols(Mat& W, int64_t rows, int64_t cols, const std::vector<float>& s) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) W[size_t(r * cols + c)] *= s[size_t(c)];
}
void divide_rows(Mat& W, int64_t rows, int64_t cols, const std::vector<float>& s) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) W[size_t(r * cols + c)] /= s[size_t(r)];
}

}  // namespace

void awq_fold_scales(LlamaModel& model, int layer, std::array<std::vector<float>, 7>& W,
                     const std::array<std::vector<float>, 4>& scales) {
  auto rows = [&](LinearKind k) { return model.linear(layer, k).rows(); };
  auto cols = [&](LinearKind k) { return model.linear(layer, k).cols(); };
  auto Wk = [&](LinearKind k) -> std::vector<float>& { return W[size_t(int(k))]; };
  auto sc = [&](InputSite s) -> const std::vector<float>& { return scales[size_t(int(s))]; };
  auto fold_norm = [&](InputSite site, std::initializer_list<LinearKind> ks) {
    const std::vector<float>& s = sc(site);
    if (s.empty()) return;
    std::vector<float>& ln = model.norm_weight(layer, site);
    LOWBIT_ASSERT(ln.size() == s.size());
    for (size_t c = 0; c < s.size(); ++c) ln[c] /= s[c];
    for (LinearKind k : ks) scale_cols(Wk(k), rows(k), cols(k), s);
  };
  // prev linear's output rows ÷ s, next linear's input columns × s
  auto fold_linear = [&](InputSite site, LinearKind prev, LinearKind next) {
    const std::vector<float>& s = sc(site);
    if (s.empty()) return;
    LOWBIT_ASSERT(int64_t(s.size()) == rows(prev) && int64_t(s.size()) == cols(next));
    divide_rows(Wk(prev), rows(prev), cols(prev), s);
    scale_cols(Wk(next), rows(next), cols(next), s);
  };
  fold_norm(InputSite::AttnIn, {LinearKind::Q, LinearKind::K, LinearKind::V});
  fold_linear(InputSite::OIn, LinearKind::V, LinearKind::O);
  fold_norm(InputSite::MlpIn, {LinearKind::Gate, LinearKind::Up});
  fold_linear(InputSite::DownIn, LinearKind::Up, LinearKind::Down);
}

std::vector<float> awq_scales(const std::vector<float>& mean_abs, float alpha) {
  std::vector<float> s(mean_abs.size());
  float mx = 0, mn = std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < s.size(); ++i) {
    s[i] = std::max(std::pow(mean_abs[i], alpha), 1e-4f);
    mx = std::max(mx, s[i]);
    mn = std::min(mn, s[i]);
  }
  const float norm = std::sqrt(mx * mn);
  for (float& v : s) v /= norm;
  return s;
}

std::vector<float> awq_clip_bounds(const float* W, int64_t rows, int64_t cols, const float* X, int64_t n,
                                   const AwqOptions& o) {
  const int64_t gs = o.group_size > 0 ? o.group_size : cols, G = cols / gs;
  const int maxq = o.spec.maxq();
  Mat absmax(size_t(rows * G), 0.0f), best_m, best_err(size_t(rows * G), 1e9f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      float& m = absmax[size_t(r * G + c / gs)];
      m = std::max(m, std::fabs(W[r * cols + c]));
    }
  best_m = absmax;
  Mat delta(size_t(rows * cols)), E(size_t(n * rows));  // ŵ − w (rows, cols); X_g·Δ_gᵀ (n, rows)
  const int steps = int(o.clip_max_shrink * o.clip_grid);
  for (int i = 0; i < steps; ++i) {
    const float f = float(1.0 - double(i) / o.clip_grid);
    parallel_for(
        rows,
        [&](int64_t r) {
          std::vector<float> tmp(static_cast<size_t>(gs));
          for (int64_t g = 0; g < G; ++g) {
            const float m = absmax[size_t(r * G + g)] * f;
            const float* w = W + r * cols + g * gs;
            for (int64_t j = 0; j < gs; ++j) tmp[size_t(j)] = std::clamp(w[j], -m, m);
            const AffineParams p = find_params(tmp.data(), gs, o.spec);
            for (int64_t j = 0; j < gs; ++j)
              delta[size_t(r * cols + g * gs + j)] = fake_quantize_value(tmp[size_t(j)], p, maxq) - w[j];
          }
        },
        8, worth_parallel(8.0 * double(rows) * double(cols)));
    for (int64_t g = 0; g < G; ++g) {
      // E (n, rows) = X[:, g] (n, gs) · Δ[:, g]ᵀ (gs, rows)
      ops::gemm(true, n, rows, gs, 1.0f, X + g * gs, cols, delta.data() + g * gs, cols, 0.0f, E.data(), rows);
      for (int64_t r = 0; r < rows; ++r) {
        double e = 0;
        for (int64_t t = 0; t < n; ++t) e += double(E[size_t(t * rows + r)]) * E[size_t(t * rows + r)];
        e /= double(n);
        if (e < best_err[size_t(r * G + g)]) {
          best_err[size_t(r * G + g)] = float(e);
          best_m[size_t(r * G + g)] = absmax[size_t(r * G + g)] * f;
        }
      }
    }
  }
  return best_m;
}

AwqLayerResult awq_quantize_layer(LlamaModel& model, int layer, Activations& acts, const AwqOptions& o) {
  const ModelConfig& cfg = model.config();
  const int64_t d = cfg.n_embd, f = cfg.n_ff, T = acts.T, tokens = int64_t(acts.n) * T;
  std::array<Mat, 7> W;  // full-precision weights, by LinearKind
  std::array<int64_t, 7> R{}, C{};
  for (LinearKind k : kAllLinears) {
    const Linear& l = model.linear(layer, k);
    W[size_t(int(k))] = linear_to_f32(l);
    R[size_t(int(k))] = l.rows();
    C[size_t(int(k))] = l.cols();
  }
  auto Wk = [&](LinearKind k) -> Mat& { return W[size_t(int(k))]; };
  auto rows = [&](LinearKind k) { return R[size_t(int(k))]; };
  auto cols = [&](LinearKind k) { return C[size_t(int(k))]; };
  const bool search_o =
      rows(LinearKind::V) == rows(LinearKind::O) && cols(LinearKind::V) == cols(LinearKind::O);

  // 1. Full-precision pass: statistics, kept inputs, reference attention output, next layer's inputs.
  Capture cap;
  cap.T = T;
  cap.tokens = tokens;
  cap.step = std::max<int64_t>(1, tokens / o.clip_tokens);
  cap.keep_o = search_o;
  cap.Wo = &Wk(LinearKind::O);
  cap.d = d;
  Activations out = acts.like();
  {
    KVCache cache = model.new_cache(int(T));
    Mat x(acts.window_size());
    for (int i = 0; i < acts.n; ++i) {
      cap.window = i;
      cache.n_past = 0;
      acts.load(i, x.data());
      model.block_forward(layer, x.data(), T, cache, &cap);
      out.store(i, x.data());
    }
  }
  AwqLayerResult res;
  const int s_attn = int(InputSite::AttnIn), s_o = int(InputSite::OIn), s_mlp = int(InputSite::MlpIn);

  // 2a. q/k/v against the attention output: rerun the block up to o_proj's input with candidate q/k/v.
  std::vector<float> sc_attn = search_scales(
      cap.mean_abs(InputSite::AttnIn), o,
      [&](const std::vector<float>& s) {
        const Linear saved[3] = {model.linear(layer, LinearKind::Q), model.linear(layer, LinearKind::K),
                                 model.linear(layer, LinearKind::V)};
        for (LinearKind k : {LinearKind::Q, LinearKind::K, LinearKind::V})
          model.set_linear(
              layer, k, owned_f32_linear(scaled_fake_quant(Wk(k), rows(k), cols(k), s, o), rows(k), cols(k)));
        struct Probe : BlockObserver {
          const Capture* cap;
          const Mat* Wo;
          int64_t d, window;
          double err = 0;
          Mat y;
          void observe(int, InputSite site, const float* x, int64_t n, int64_t c) override {
            if (site != InputSite::OIn) return;
            y.resize(size_t(n * d));
            matmul_t(x, n, c, Wo->data(), d, y.data());
            err += sq_diff_sum(y.data(), cap->attn_out.data() + window * n * d, y.size());
            throw StopBlock{};
          }
        } probe;
        probe.cap = &cap;
        probe.Wo = &Wk(LinearKind::O);
        probe.d = d;
        KVCache cache = model.new_cache(int(T));
        Mat x(size_t(T * d));
        try {
          for (int i = 0; i < acts.n; ++i) {
            probe.window = i;
            acts.load(i, x.data());
            cache.n_past = 0;
            try {
              model.block_forward(layer, x.data(), T, cache, &probe);
            } catch (const StopBlock&) {
            }
          }
        } catch (...) {
          for (int j = 0; j < 3; ++j) model.set_linear(layer, LinearKind(j), saved[j]);
          throw;
        }
        for (int j = 0; j < 3; ++j) model.set_linear(layer, LinearKind(j), saved[j]);
        return probe.err / double(tokens * d);
      },
      &res.alpha[size_t(s_attn)], &res.loss[size_t(s_attn)]);

  // Output MSE of one linear on stored inputs X (tokens, cols) against the full-precision output.
  auto linear_search = [&](LinearKind k, const Mat& X, InputSite site) {
    const int64_t rk = rows(k), ck = cols(k);
    Mat ref(size_t(tokens * rk)), y(size_t(kChunk * rk));
    matmul_t(X.data(), tokens, ck, Wk(k).data(), rk, ref.data());
    return search_scales(
        cap.mean_abs(site), o,
        [&](const std::vector<float>& s) {
          const Mat wq = scaled_fake_quant(Wk(k), rk, ck, s, o);
          double err = 0;
          for (int64_t t0 = 0; t0 < tokens; t0 += kChunk) {
            const int64_t n = std::min(kChunk, tokens - t0);
            matmul_t(X.data() + t0 * ck, n, ck, wq.data(), rk, y.data());
            err += sq_diff_sum(y.data(), ref.data() + t0 * rk, size_t(n * rk));
          }
          return err / double(tokens * rk);
        },
        &res.alpha[size_t(int(site))], &res.loss[size_t(int(site))]);
  };

  // 2b. o_proj (only without GQA).
  std::vector<float> sc_o;
  if (search_o) sc_o = linear_search(LinearKind::O, cap.o_in, InputSite::OIn);

  // 2c. gate/up against the MLP output down(silu(gate x) · up x), down in full precision.
  std::vector<float> sc_mlp;
  {
    auto mlp = [&](const Mat& Wg, const Mat& Wu, int64_t t0, int64_t n, Mat& g, Mat& u, float* yout) {
      matmul_t(cap.mlp_in.data() + t0 * d, n, d, Wg.data(), f, g.data());
      matmul_t(cap.mlp_in.data() + t0 * d, n, d, Wu.data(), f, u.data());
      for (size_t i = 0; i < size_t(n * f); ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];  // SwiGLU
      matmul_t(g.data(), n, f, Wk(LinearKind::Down).data(), d, yout);
    };
    Mat ref(size_t(tokens * d)), g(size_t(kChunk * f)), u(g.size()), y(size_t(kChunk * d));
    for (int64_t t0 = 0; t0 < tokens; t0 += kChunk)
      mlp(Wk(LinearKind::Gate), Wk(LinearKind::Up), t0, std::min(kChunk, tokens - t0), g, u,
          ref.data() + t0 * d);
    sc_mlp = search_scales(
        cap.mean_abs(InputSite::MlpIn), o,
        [&](const std::vector<float>& s) {
          const Mat wg = scaled_fake_quant(Wk(LinearKind::Gate), f, d, s, o);
          const Mat wu = scaled_fake_quant(Wk(LinearKind::Up), f, d, s, o);
          double err = 0;
          for (int64_t t0 = 0; t0 < tokens; t0 += kChunk) {
            const int64_t n = std::min(kChunk, tokens - t0);
            mlp(wg, wu, t0, n, g, u, y.data());
            err += sq_diff_sum(y.data(), ref.data() + t0 * d, size_t(n * d));
          }
          return err / double(tokens * d);
        },
        &res.alpha[size_t(s_mlp)], &res.loss[size_t(s_mlp)]);
  }

  // 2d. down_proj.
  std::vector<float> sc_down = linear_search(LinearKind::Down, cap.down_in, InputSite::DownIn);

  // 3. Fold (llm-awq apply_scale) and scale the kept inputs the same way (x ÷ s), for clipping.
  awq_fold_scales(model, layer, W, {sc_attn, sc_o, sc_mlp, sc_down});
  auto divide_cols = [](Mat& X, int64_t c, const std::vector<float>& s) {
    for (size_t i = 0; i < X.size(); ++i) X[i] /= s[i % size_t(c)];
  };
  Mat attn_x = cap.attn_sub;
  divide_cols(attn_x, d, sc_attn);
  Mat o_x = search_o ? subsample(cap.o_in, tokens, cols(LinearKind::O), cap.step) : cap.o_sub;
  if (search_o) divide_cols(o_x, cols(LinearKind::O), sc_o);
  Mat mlp_x = subsample(cap.mlp_in, tokens, d, cap.step);
  divide_cols(mlp_x, d, sc_mlp);
  Mat down_x = subsample(cap.down_in, tokens, f, cap.step);
  divide_cols(down_x, f, sc_down);
  res.alpha[size_t(s_o)] = search_o ? res.alpha[size_t(s_o)] : NAN;

  // 4. Clip every linear but q and k (their product through softmax makes the output error a poor proxy),
  // then quantize all seven.
  for (LinearKind k : kAllLinears) {
    Mat& w = Wk(k);
    const int64_t rk = rows(k), ck = cols(k);
    const Mat* X = nullptr;
    switch (k) {
      case LinearKind::V:
        X = &attn_x;
        break;
      case LinearKind::O:
        X = &o_x;
        break;
      case LinearKind::Gate:
      case LinearKind::Up:
        X = &mlp_x;
        break;
      case LinearKind::Down:
        X = &down_x;
        break;
      default:
        break;
    }
    if (o.clip && X) {
      const std::vector<float> m = awq_clip_bounds(w.data(), rk, ck, X->data(), cap.n_sub(), o);
      const int64_t gs = o.group_size > 0 ? o.group_size : ck, G = ck / gs;
      for (int64_t r = 0; r < rk; ++r)
        for (int64_t c = 0; c < ck; ++c) {
          const float b = m[size_t(r * G + c / gs)];
          w[size_t(r * ck + c)] = std::clamp(w[size_t(r * ck + c)], -b, b);
        }
    }
    Mat fq(w.size());
    auto qw = quantize_rtn(w.data(), rk, ck, o.spec, granularity(o), o.group_size, fq.data());
    double num = 0, den = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      num += (double(w[i]) - fq[i]) * (double(w[i]) - fq[i]);
      den += double(w[i]) * w[i];
    }
    res.rel_err[size_t(int(k))] = den > 0 ? std::sqrt(num / den) : 0;
    res.weights[size_t(int(k))] = qw;
    Linear l;
    l.packed = qw;
    model.set_linear(layer, k, std::move(l));
  }
  acts = std::move(out);
  return res;
}

// --- The method: scale search, clipping and RTN per layer, scales folded into the model. ---

namespace {

void awq_layer(LayerJob& job) {
  AwqOptions o;
  o.spec = affine_spec(job.cfg);
  o.group_size = job.cfg.group;
  const AwqLayerResult a = awq_quantize_layer(job.model, job.layer, *job.acts, o);
  job.layer_report.awq_alpha = a.alpha;
  for (LinearKind k : kAllLinears) {
    LinearReport r = linear_report(job.layer, k, *a.weights[size_t(int(k))]);
    r.rel_err = a.rel_err[size_t(int(k))];
    job.report.linears.push_back(r);
  }
}

// llm-awq's default calibration is 128 × 512 tokens, and its 20 × 4 block re-evaluations scale with the
// token count, so the search runs on the first awq_seqlen tokens of each window (exact for a causal model).
int awq_calib_tokens(const QuantConfig& cfg) {
  const int t = cfg.opt<int>("awq_seqlen");
  return t > 0 ? std::min(t, cfg.seqlen) : cfg.seqlen;
}

}  // namespace

const Method& awq_method() {
  static const Method m = [] {
    Method m;
    m.name = "awq";
    m.label = "AWQ";
    m.summary = "AWQ (Lin et al. 2023): activation-aware scales and clipping, then round to nearest";
    m.needs_calibration = true;
    m.format = "affine";
    m.options = {sym_option(),
                 mse_option(),
                 {"awq_seqlen", OptionType::Int, 512,
                  "tokens of each calibration window the search runs on; 0 = the whole window", 0}};
    m.quantize_layer = awq_layer;
    m.calib_tokens = awq_calib_tokens;
    return m;
  }();
  return m;
}

}  // namespace lowbit

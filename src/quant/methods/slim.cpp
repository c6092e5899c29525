#include "quant/methods/slim.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>

#include "core/dtype.h"
#include "core/error.h"
#include "core/json.h"
#include "core/parallel.h"
#include "kernels/ops.h"
#include "quant/primitives.h"
#include "quant/quantize.h"
#include "quant/sequential.h"

namespace lowbit {

namespace {

constexpr float kProbMin = 1e-6f;  // reconstruct.py kl_div's clamp
constexpr double kNorm = 2.4;      // Quantizer(norm = 2.4)

// RTN on the grid scale·(q − zero), q in [0, maxq] (zero an integer 0..maxq, scale in f32 as upstream fits
// it).
float rtn(float x, float scale, float zero, int maxq) {
  return fake_quantize_value(x, AffineParams{scale, 0, uint8_t(zero)}, maxq);
}

// Σ_g W²/U_jj² per group (U's diagonal in `d`).
std::vector<double> group_salience(const float* w, int64_t rows, int64_t cols, int64_t gs, const float* d,
                                   int64_t ldd) {
  std::vector<double> s(size_t(cols / gs), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float v = w[r * cols + c], u = d[c * ldd + c];
      s[size_t(c / gs)] += double((v * v) / (u * u));
    }
  return s;
}

// 0 for the i least salient groups, 2 for the i most salient, 1 for the rest (ties to the lower group).
std::vector<int> labels_for(const std::vector<double>& sal, int i) {
  std::vector<int64_t> order(sal.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return sal[size_t(a)] < sal[size_t(b)]; });
  std::vector<int> lab(sal.size(), 1);
  for (int k = 0; k < i; ++k)
    lab[size_t(order[size_t(k)])] = 0, lab[size_t(order[order.size() - 1 - size_t(k)])] = 2;
  return lab;
}

// bitsearch.py block_quantize on one group's columns of W, into Wq (same layout): per-row min–max RTN, or
// at 1 bit μ ± mean|w| (sign(0) = 0).
void search_quantize(const float* w, float* wq, int64_t rows, int64_t cols, int64_t c0, int64_t n, int bits) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = w + r * cols + c0;
    float* q = wq + r * cols + c0;
    if (bits == 1) {
      double s = 0, a = 0;
      for (int64_t j = 0; j < n; ++j) s += x[j], a += std::fabs(x[j]);
      const float m = float(s / double(n)), al = float(a / double(n));
      for (int64_t j = 0; j < n; ++j) {
        const float d = x[j] - m;
        q[j] = (d > 0 ? al : d < 0 ? -al : 0.0f) + m;
      }
      continue;
    }
    const float maxq = float((1 << bits) - 1);
    float lo, hi;
    zero_inclusive_range(x, n, &lo, &hi);
    const float scale = (hi - lo) / maxq, zero = std::nearbyint(-lo / scale);
    for (int64_t j = 0; j < n; ++j) q[j] = rtn(x[j], scale, zero, int(maxq));
  }
}

// softmax over the rows outputs of each token, clamped below at 1e-6, in place; with logs: their logarithms.
void clamped_softmax(float* y, int64_t n_tok, int64_t rows, bool logs) {
  parallel_for(n_tok, [&](int64_t t) {
    float* v = y + t * rows;
    const float mx = *std::max_element(v, v + rows);
    double s = 0;
    for (int64_t r = 0; r < rows; ++r) s += std::exp(double(v[r] - mx));
    for (int64_t r = 0; r < rows; ++r) {
      const float p = std::max(float(std::exp(double(v[r] - mx)) / s), kProbMin);
      v[r] = logs ? std::log(p) : p;
    }
  });
}

// Step 2: the error of each i (mean over sequences of Σ_tokens KL(P_quant ‖ P_fp)) and the first minimum.
int sba_search(const float* w, int64_t rows, int64_t cols, int64_t gs, int b, const std::vector<double>& sal,
               const float* x, int64_t n_tok, int64_t n_seq, std::vector<double>* errors) {
  const int64_t G = cols / gs, per = n_tok / n_seq;
  // log R: the clamped softmax of the true outputs x Wᵀ, (per, rows) per sequence; kept for every sequence
  // when that fits in 512 MiB, else recomputed per candidate (a 8B down_proj's would be 15 GiB).
  const bool keep = double(n_tok) * double(rows) * 4 <= double(512 << 20);
  std::vector<float> logr(size_t((keep ? n_tok : per) * rows)), p(size_t(per * rows)),
      wq(size_t(rows * cols));
  auto log_r = [&](int64_t s) -> const float* {
    float* out = &logr[size_t((keep ? s * per : 0) * rows)];
    ops::gemm(true, per, rows, cols, 1.0f, x + s * per * cols, cols, w, cols, 0.0f, out, rows);
    clamped_softmax(out, per, rows, true);
    return out;
  };
  if (keep)
    for (int64_t s = 0; s < n_seq; ++s) log_r(s);
  for (int i = 1; i < G / 2; ++i) {
    const std::vector<int> lab = labels_for(sal, i);
    for (int64_t g = 0; g < G; ++g)
      search_quantize(w, wq.data(), rows, cols, g * gs, gs, b - 1 + lab[size_t(g)]);
    double total = 0;
    for (int64_t s = 0; s < n_seq; ++s) {
      const float* lr = keep ? &logr[size_t(s * per * rows)] : log_r(s);
      ops::gemm(true, per, rows, cols, 1.0f, x + s * per * cols, cols, wq.data(), cols, 0.0f, p.data(), rows);
      clamped_softmax(p.data(), per, rows, false);
      double kl = 0;
      for (int64_t k = 0; k < per * rows; ++k) kl += double(p[size_t(k)]) * (std::log(p[size_t(k)]) - lr[k]);
      total += kl;
    }
    errors->push_back(total / double(n_seq));
  }
  if (errors->empty()) return 0;
  return int(std::min_element(errors->begin(), errors->end()) - errors->begin()) + 1;
}

// One group's quantizer (mixed_quantizer.py Quantizer.fit), fitted on the group's current weights.
struct GroupFit {
  int bits = 0;
  std::vector<float> scale, zero;  // per row; zero: the integer zero-point, or the 1-bit mean
};

GroupFit fit_group(const float* W, int64_t rows, int64_t cols, int64_t c0, int64_t n, int bits, bool sym) {
  GroupFit f{bits, std::vector<float>(size_t(rows)), std::vector<float>(size_t(rows))};
  static const std::vector<float> grid = [] {
    std::vector<float> g{1.0f};
    const std::vector<float> up = torch_linspace_f32(1.0f, 1.1f, 51),
                             down = torch_linspace_f32(1.0f, 0.9f, 51);
    g.insert(g.end(), up.begin() + 1, up.end());
    g.insert(g.end(), down.begin() + 1, down.end());
    return g;
  }();
  parallel_for(
      rows,
      [&](int64_t r) {
        const float* x = W + r * cols + c0;
        if (bits == 1) {  // binary_scale: (mean |w|, mean w)
          double s = 0, a = 0;
          for (int64_t j = 0; j < n; ++j) s += x[j], a += std::fabs(x[j]);
          f.scale[size_t(r)] = round_to_f16(float(a / double(n)));
          f.zero[size_t(r)] = round_to_f16(float(s / double(n)));
          return;
        }
        const float maxq = float((1 << bits) - 1);
        float lo, hi;
        zero_inclusive_range(x, n, &lo, &hi);
        float scale = (hi - lo) / maxq, zero = sym ? (maxq + 1) / 2 : std::nearbyint(-lo / scale);
        double best = INFINITY;
        for (float pf : grid) {
          const float lo1 = pf * lo, hi1 = pf * hi, s1 = (hi1 - lo1) / maxq;
          const float z1 = sym ? zero : std::nearbyint(-lo1 / s1);
          double err = 0;
          for (int64_t j = 0; j < n; ++j)
            err += std::pow(double(std::fabs(rtn(x[j], s1, z1, int(maxq)) - x[j])), kNorm);
          if (err < best) best = err, scale = s1, zero = z1;
        }
        f.scale[size_t(r)] = round_to_f16(scale);
        f.zero[size_t(r)] = zero;
      },
      8, worth_parallel(300.0 * double(rows) * double(n)));
  return f;
}

}  // namespace

SlimResult slim_quantize(const float* w_in, int64_t rows, int64_t cols, std::vector<float> H, const float* x,
                         int64_t n_tok, int64_t n_seq, const std::vector<uint8_t>& given,
                         const SlimOptions& o, std::string_view name) {
  const int64_t gs = o.group_size, G = cols / gs;
  const int b = o.bits;
  if (gs <= 0 || gs % 8 != 0 || cols % gs != 0)
    fail("{}: slim group {} must be a multiple of 8 dividing the {} input columns", name, gs, cols);
  if (b < 2 || b > 7) fail("{}: slim wbits {} is outside 2..7 (groups get wbits − 1 … wbits + 1)", name, b);
  if (!given.empty() && int64_t(given.size()) != G)
    fail("{}: the given allocation has {} groups, the linear {}", name, given.size(), G);
  for (uint8_t v : given)
    if (v < 1 || v > 8) fail("{}: the given allocation has a group of {} bits (1..8)", name, int(v));
  LOWBIT_ASSERT(rows > 0 && H.size() == size_t(cols * cols));
  for (float h : H)
    if (!std::isfinite(h)) fail("{}: Hessian contains NaN/Inf (non-finite calibration activations?)", name);
  std::vector<float> W(w_in, w_in + rows * cols);
  SlimResult res;
  std::vector<int> labels;  // empty: a given allocation (asymmetric grids throughout)
  if (given.empty()) {
    // Step 1, in upstream's H scale; its H changes (dead diagonal 1, + abs_damp) carry into step 3.
    const auto up = float(o.window_tokens);
    for (float& h : H) h *= up;
    for (int64_t i = 0; i < cols; ++i) {
      float& hii = H[size_t(i * cols + i)];
      if (hii == 0) hii = 1;
      hii += float(o.abs_damp);
    }
    std::vector<float> Us = H;
    hessian_inverse_factor(Us, cols, 0.0, 0, name);
    const std::vector<double> sal_search = group_salience(W.data(), rows, cols, gs, Us.data(), cols);
    Us = {};
    // Step 2.
    if (G >= 4) {
      if (!x || n_seq < 1 || n_tok % n_seq != 0)
        fail("{}: slim's bit allocation needs the calibration inputs (equal sequences)", name);
      res.i_star = sba_search(W.data(), rows, cols, gs, b, sal_search, x, n_tok, n_seq, &res.sba_error);
    }
    // Step 3.
    res.damp_used = hessian_inverse_factor(H, cols, o.damp, o.max_damp_retries, name);
    labels = labels_for(group_salience(W.data(), rows, cols, gs, H.data(), cols), res.i_star);
    for (int l : labels) res.bits.push_back(uint8_t(b - 1 + l));
  } else {
    fix_dead_columns(H, W.data(), rows, cols);
    res.damp_used = hessian_inverse_factor(H, cols, o.damp, o.max_damp_retries, name);
    res.bits = given;
  }
  const std::vector<float> U = std::move(H);

  // Step 4: GPTQ in blocks of one group.
  std::vector<uint8_t> codes(size_t(rows * cols)), zeros(size_t(rows * G), 0);
  std::vector<float> scales(size_t(rows * G)), means(size_t(rows * G), 0.0f), Err1(size_t(rows * gs));
  std::vector<double> row_loss(static_cast<size_t>(rows), 0.0);
  bool sym = true;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t st = g * gs, bits = res.bits[size_t(g)];
    if (labels.empty() || labels[size_t(g)] != 0) sym = false;
    const GroupFit f = fit_group(W.data(), rows, cols, st, gs, int(bits), sym);
    const float maxq = float((1 << bits) - 1);
    parallel_for(
        rows,
        [&](int64_t r) {
          float* w1 = &W[size_t(r * cols + st)];
          float* e1 = &Err1[size_t(r * gs)];
          const float s = f.scale[size_t(r)], z = f.zero[size_t(r)];
          const size_t rg = size_t(r * G + g);
          scales[rg] = s;
          if (bits == 1)
            means[rg] = z;
          else
            zeros[rg] = uint8_t(z);
          for (int64_t i = 0; i < gs; ++i) {
            const int64_t col = st + i;
            const float xv = w1[i];
            uint32_t c;
            if (bits == 1)
              c = xv - z >= 0;
            else
              c = quantize_value(xv, AffineParams{s, 0, uint8_t(z)}, int(maxq));
            codes[size_t(r * cols + col)] = uint8_t(c);
            const float q = slim_value(int(bits), c, s, zeros[rg], means[rg]);
            const float* u = &U[size_t(col * cols)];
            const float err = (xv - q) / u[col];
            row_loss[size_t(r)] += double(err) * err;
            e1[i] = err;
            for (int64_t j = i + 1; j < gs; ++j) w1[j] -= err * u[st + j];
          }
        },
        8, worth_parallel(double(rows) * double(gs) * double(gs)));
    const int64_t ed = st + gs;
    if (ed < cols)
      ops::gemm(false, rows, cols - ed, gs, -1.0f, Err1.data(), gs, &U[size_t(st * cols + ed)], cols, 1.0f,
                &W[size_t(ed)], cols);
  }
  for (double l : row_loss) res.loss += l / 2;
  res.weight =
      make_slim(rows, cols, gs, res.bits.data(), codes.data(), scales.data(), zeros.data(), means.data());
  return res;
}

namespace {

// The allocation file: {"<layer>.<linear>": [bits of each group], ...} (what `lowbit info --slim-allocation`
// exports).
std::vector<uint8_t> given_bits(const QuantConfig& cfg, const std::string& key, int64_t G) {
  const std::string path = cfg.opt<std::string>("allocation");
  if (path.empty()) return {};
  const Json j = parse_json_file(path);  // per linear: small, and never stale
  if (!j.is_object() || !j.contains(key) || !j[key].is_array())
    fail("{}: no allocation for {} (an object of \"<layer>.<linear>\": [bits per group])", path, key);
  std::vector<uint8_t> bits;
  for (const Json& v : j[key]) {
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 8)
      fail("{}: {}: a group's bits must be an integer in 1..8", path, key);
    bits.push_back(uint8_t(v.get<int64_t>()));
  }
  if (int64_t(bits.size()) != G) fail("{}: {} has {} groups, the linear {}", path, key, bits.size(), G);
  return bits;
}

void slim_layer(LayerJob& job) {
  const QuantConfig& cfg = job.cfg;
  SlimOptions opt;
  opt.bits = cfg.wbits;
  opt.group_size = cfg.group;
  opt.damp = cfg.opt<double>("damp");
  opt.window_tokens = cfg.seqlen;
  const bool search = cfg.opt<std::string>("allocation").empty();
  quantize_layer_with_hessians(
      job, cfg.opt<bool>("true_sequential"), false,
      [&](LinearJob& lj) {
        const std::string key = std::to_string(lj.layer) + "." + linear_name(lj.kind);
        const std::vector<uint8_t> given = given_bits(cfg, key, lj.cols / cfg.group);
        const float* x = lj.x ? lj.x->data() : nullptr;
        opt.window_tokens = cfg.nsamples > 0 && lj.x_tokens > 0 ? lj.x_tokens / cfg.nsamples : cfg.seqlen;
        SlimResult s = slim_quantize(lj.w.data(), lj.rows, lj.cols, std::move(lj.H), x, lj.x_tokens,
                                     cfg.nsamples, given, opt, lj.name);
        if (!lj.dump_dir.empty()) {
          write_npy(lj.dump_dir / "bits.npy", s.bits.data(), 1, {int64_t(s.bits.size())}, "|i1");
          if (!s.sba_error.empty())
            write_npy(lj.dump_dir / "sba_err.npy", s.sba_error.data(), 8, {int64_t(s.sba_error.size())},
                      "<f8");
          if (lj.x && lj.cols / cfg.group >= 4)
            write_npy(lj.dump_dir / "X.npy", lj.x->data(), 4, {lj.x_tokens, lj.cols}, "<f4");
          std::ofstream(lj.dump_dir / "meta.json") << Json{
              {"method", "slim"},
              {"wbits", opt.bits},
              {"group", opt.group_size},
              {"damp", opt.damp},
              {"abs_damp", opt.abs_damp},
              {"norm", kNorm},
              {"lambda_salience", 1.0},
              {"zscore", 2.0},
              {"allocation", given.empty() ? "sba" : "given"},
              {"small_g", "uniform"},
              {"hessian_norm", "tokens"},
              {"nsamples", cfg.nsamples},
              {"seqlen", opt.window_tokens},
              {"scale_dtype", "fp16"}}.dump();
        }
        LinearResult r;
        r.weight = std::move(s.weight);
        r.loss = s.loss;
        r.damp = s.damp_used;
        return r;
      },
      search);
}

}  // namespace

const Method& slim_method() {
  static const Method m = [] {
    Method m;
    m.name = "slim";
    m.label = "SliM-LLM";
    m.summary =
        "SliM-LLM (Huang et al. 2024): per-group mixed precision by salience (b-1/b/b+1 bits chosen by the "
        "KL "
        "of the layer's outputs), salience-weighted scale search, GPTQ error feedback";
    m.needs_calibration = true;
    m.min_bits = 2;
    m.max_bits = 7;
    m.format = "slim";
    m.group_multiple = 8;
    MethodOption damp{"damp", OptionType::Number, 0.01, "relative dampening of H's diagonal", 0};
    damp.min_exclusive = true;
    m.options = {damp,
                 {"allocation", OptionType::String, std::string(),
                  "a JSON file of per-linear group bits to use instead of the search (lowbit info "
                  "--slim-allocation writes one)"},
                 {"true_sequential", OptionType::Bool, false, "q/k/v, then o, then gate/up, then down"}};
    m.quantize_layer = slim_layer;
    return m;
  }();
  return m;
}

}  // namespace lowbit

#include "quant/methods/quip.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "core/error.h"
#include "core/lapack.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "quant/calib.h"
#include "quant/primitives.h"
#include "quant/quantize.h"
#include "quant/sequential.h"

namespace lowbit {

namespace {

// M (nr, n) ← each row m ↦ R·m (right = false) or each column ↦ R·column (right = true: R·M for R of width
// nr).
void rotate_rows_f64(const Rotation& r, double* m, int64_t nr, int64_t n) {
  LOWBIT_ASSERT(r.n == n);
  parallel_for(
      nr, [&](int64_t i) { rotate_ref(r, m + i * n, false); }, 4,
      worth_parallel(double(nr) * double(n) * 64));
}
void rotate_cols_f64(const Rotation& r, double* m, int64_t nr, int64_t n) {
  LOWBIT_ASSERT(r.n == nr);
  parallel_for(
      n,
      [&](int64_t c) {
        std::vector<double> col(static_cast<size_t>(nr));
        for (int64_t i = 0; i < nr; ++i) col[size_t(i)] = m[i * n + c];
        rotate_ref(r, col.data(), false);
        for (int64_t i = 0; i < nr; ++i) m[i * n + c] = col[size_t(i)];
      },
      4, worth_parallel(double(nr) * double(n) * 64));
}

// LDLQ (vector_balance.py round_ldl) on t (rows, n) with H (n, n) positive definite (consumed): codes ŵ into
// q, each row independently, columns from last to first in lazy batches of `block` (the carried feedback of
// finished batches enters later columns through one dgemm per batch).
void ldlq(const std::vector<double>& t, int64_t rows, int64_t n, std::vector<double> H, int maxq, int block,
          std::vector<double>& q, std::string_view name) {
  // H = UᵀU (row-major upper U); the unit lower factor of LDLQ is L̊[j][i] = U[i][j] / U[i][i] (j > i), which
  // is row i of U scaled: LT[i][j].
  if (lapack::cholesky_upper(H.data(), int(n)) != 0)
    fail("{}: the processed Hessian is not positive definite (LDLQ's Cholesky factorisation failed)", name);
  std::vector<double>& LT = H;
  for (int64_t i = 0; i < n; ++i) {
    const double uii = LT[size_t(i * n + i)];
    for (int64_t j = i + 1; j < n; ++j) LT[size_t(i * n + j)] /= uii;
  }
  q.assign(size_t(rows * n), 0.0);
  std::vector<double> carried(size_t(rows * n), 0.0);  // Σ over finished batches of e_j·L̊[j][i]
  std::vector<double> err(size_t(rows * n), 0.0);      // t − ŵ of finished columns
  for (int64_t i2 = n; i2 > 0; i2 -= block) {
    const int64_t i1 = std::max<int64_t>(0, i2 - block);
    parallel_for(
        rows,
        [&](int64_t r) {
          const double* tr = &t[size_t(r * n)];
          double* er = &err[size_t(r * n)];
          for (int64_t i = i2 - 1; i >= i1; --i) {
            const double* l = &LT[size_t(i * n)];
            double c = carried[size_t(r * n + i)];
            for (int64_t j = i + 1; j < i2; ++j) c += er[j] * l[j];
            const double v = std::clamp(std::floor(tr[i] + c + 0.5), 0.0, double(maxq));
            q[size_t(r * n + i)] = v;
            er[i] = tr[i] - v;
          }
        },
        8, worth_parallel(double(rows) * double(i2 - i1) * double(i2 - i1)));
    // carried[:, :i1] += err[:, i1:i2] · LT[:i1, i1:i2]ᵀ
    if (i1 > 0)
      ops::gemm_f64(true, rows, i1, i2 - i1, 1.0, &err[size_t(i1)], n, &LT[size_t(i1)], n, 1.0,
                    carried.data(), n);
  }
}

// The greedy passes of round_ldl: coordinate descent on tr(s Hn sᵀ), s = ŵ − t, Hn = H / max diag H, columns
// from last to first, each column's code moved to the best integer given the others (round half to even),
// clamped after the pass (s keeps the unclamped value, as upstream). Lazy batches: Hs of a batch's columns
// by one dgemm with the current s, then updated in the batch as its columns change. Returns the passes run.
int greedy_passes(const std::vector<double>& t, int64_t rows, int64_t n, const std::vector<double>& H,
                  int maxq, int npasses, int block, std::vector<double>& q) {
  double hmax = 0;
  for (int64_t i = 0; i < n; ++i) hmax = std::max(hmax, H[size_t(i * n + i)]);
  std::vector<double> Hn(H.size());
  for (size_t i = 0; i < H.size(); ++i) Hn[i] = H[i] / hmax;
  std::vector<double> s(static_cast<size_t>(rows * n));
  for (size_t i = 0; i < s.size(); ++i) s[i] = q[i] - t[i];
  std::vector<double> wr = q, G;
  int passes = 0;
  for (int pass = 0; pass < npasses; ++pass) {
    ++passes;
    for (int64_t i2 = n; i2 > 0; i2 -= block) {
      const int64_t i1 = std::max<int64_t>(0, i2 - block), B = i2 - i1;
      G.assign(size_t(rows * B), 0.0);  // G (rows, B) = s · Hn[:, i1:i2]
      ops::gemm_f64(false, rows, B, n, 1.0, s.data(), n, &Hn[size_t(i1)], n, 0.0, G.data(), B);
      parallel_for(
          rows,
          [&](int64_t r) {
            double* g = &G[size_t(r * B)];
            for (int64_t i = i2 - 1; i >= i1; --i) {
              double& w = wr[size_t(r * n + i)];
              const double eps = w - std::nearbyint(w - g[i - i1] / Hn[size_t(i * n + i)]);
              if (eps == 0) continue;
              w -= eps;
              s[size_t(r * n + i)] -= eps;
              const double* h = &Hn[size_t(i * n)];  // row i = column i (symmetric)
              for (int64_t k = i1; k < i; ++k) g[k - i1] -= eps * h[k];
            }
          },
          8, worth_parallel(double(rows) * double(B) * double(B)));
    }
    for (double& w : wr) w = std::clamp(w, 0.0, double(maxq));
    const bool fixed = wr == q;
    q = wr;
    if (fixed) break;
  }
  return passes;
}

// quant/sequential.h's write_npy with the element size of T.
template <class T>
void write_npy(const std::filesystem::path& path, const T* data, const std::vector<int64_t>& shape,
               const char* descr) {
  lowbit::write_npy(path, static_cast<const void*>(data), sizeof(T), shape, descr);
}

std::vector<double> dense_rotation(const Rotation& r) {  // R (n, n) row-major
  const int64_t n = r.n;
  std::vector<double> m(static_cast<size_t>(n * n)), e(static_cast<size_t>(n));
  for (int64_t c = 0; c < n; ++c) {
    std::fill(e.begin(), e.end(), 0.0);
    e[size_t(c)] = 1;
    rotate_ref(r, e.data(), false);
    for (int64_t i = 0; i < n; ++i) m[size_t(i * n + c)] = e[size_t(i)];
  }
  return m;
}

void dump_rotation(const std::filesystem::path& dir, const char* tag, const Rotation& r) {
  const std::string p = tag;
  std::vector<double> R = dense_rotation(r);
  write_npy(dir / (p + ".npy"), R.data(), {r.n, r.n}, "<f8");
  if (r.kind != RotationKind::Kronecker) return;
  // Upstream's butterfly (B, p_in, p_out) with every slice's block equal (the Kronecker product).
  std::vector<int64_t> pin(r.perm_in.begin(), r.perm_in.end()), pout(r.perm_out.begin(), r.perm_out.end());
  write_npy(dir / (p + "_perm_in.npy"), pin.data(), {r.n}, "<i8");
  write_npy(dir / (p + "_perm_out.npy"), pout.data(), {r.n}, "<i8");
  auto blocks = [&](const std::vector<float>& b, int64_t pb, const char* suffix) {
    std::vector<double> out;
    for (int64_t j = 0; j < r.n / pb; ++j) out.insert(out.end(), b.begin(), b.end());
    write_npy(dir / (p + suffix), out.data(), {r.n / pb, pb, pb}, "<f8");
  };
  blocks(r.a, r.p1, "_B0.npy");
  blocks(r.b, r.p2, "_B1.npy");
}

}  // namespace

QuipResult quip_quantize(const float* w_in, int64_t rows, int64_t cols, std::vector<double> H,
                         const QuipOptions& o, std::string_view name) {
  if (o.bits < 2 || o.bits > 4) fail("{}: QuIP quantizes to 2, 3 or 4 bits, not {}", name, o.bits);
  LOWBIT_ASSERT(rows > 0 && cols > 0 && H.size() == size_t(cols * cols) && o.block > 0);
  for (double h : H)
    if (!std::isfinite(h)) fail("{}: Hessian contains NaN/Inf (non-finite calibration activations?)", name);
  auto U = make_rotation(o.rotation, rows, o.seed_u, std::string(name) + " (rows)");
  auto V = make_rotation(o.rotation, cols, o.seed_v, std::string(name) + " (columns)");
  const std::filesystem::path dump = o.dump_dir;  // W and H are there already (quant/sequential.h)
  if (!dump.empty()) {
    dump_rotation(dump, "U", *U);
    dump_rotation(dump, "V", *V);
  }
  const int maxq = (1 << o.bits) - 1;
  const int64_t n = cols;
  std::vector<double> W(w_in, w_in + rows * cols);

  // 1. Rescale (method.py preproc_rescale).
  double hmax = 0;
  for (double h : H) hmax = std::max(hmax, std::abs(h));
  if (hmax == 0) fail("{}: the Hessian is zero (no calibration signal reached this linear)", name);
  for (double& h : H) h /= hmax;
  std::vector<float> d(static_cast<size_t>(n));
  for (int64_t c = 0; c < n; ++c) {
    double w2 = 0;
    for (int64_t r = 0; r < rows; ++r) w2 += W[size_t(r * n + c)] * W[size_t(r * n + c)];
    const double v = std::sqrt(std::sqrt(std::max(H[size_t(c * n + c)], 1e-8) / std::max(w2, 1e-8)));
    d[size_t(c)] = float(std::max(v, 1e-8));
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < n; ++c) W[size_t(r * n + c)] *= double(d[size_t(c)]);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) H[size_t(i * n + j)] /= double(d[size_t(i)]) * double(d[size_t(j)]);

  // 2. Incoherence (preproc_proj): W′ = U W Vᵀ, H′ = V H Vᵀ.
  double tr = 0;
  for (int64_t i = 0; i < n; ++i) tr += H[size_t(i * n + i)];
  for (double& h : H) h *= double(n) / (tr + 1e-8);
  for (int64_t i = 0; i < n; ++i) H[size_t(i * n + i)] += 0.01;
  rotate_rows_f64(*V, W.data(), rows, n);  // W Vᵀ: each row r ↦ V·r
  rotate_cols_f64(*U, W.data(), rows, n);  // U (W Vᵀ)
  rotate_rows_f64(*V, H.data(), n, n);     // H Vᵀ
  rotate_cols_f64(*V, H.data(), n, n);     // V (H Vᵀ)

  // 3. GPTQ's H fix (preproc_gptqH).
  QuipResult res;
  double mean_diag = 0;
  for (int64_t i = 0; i < n; ++i) {
    double& h = H[size_t(i * n + i)];
    if (h == 0) {
      h = 1;
      for (int64_t r = 0; r < rows; ++r) W[size_t(r * n + i)] = 0;
      ++res.dead_columns;
    }
    mean_diag += h;
  }
  mean_diag /= double(n);
  for (int64_t i = 0; i < n; ++i) H[size_t(i * n + i)] += o.damp * mean_diag;

  // 4. One scale (quant.py qfn 'b') and the continuous codes t.
  double ss = 0;
  for (double v : W) ss += v * v;
  const float s = float(2.4 * std::sqrt(ss / double(W.size())) + 1e-16);
  std::vector<double> t(W.size());
  for (size_t i = 0; i < W.size(); ++i)
    t[i] = std::clamp((W[i] / double(s) + 1) / 2 * double(maxq), 0.0, double(maxq));

  // 5. LDLQ and the greedy passes, on columns sorted by diag H′ ascending for ldlqRG.
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  if (o.sorted)
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return H[size_t(a * n + a)] < H[size_t(b * n + b)]; });
  std::vector<double> tp(t.size()), Hp(H.size()), q;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) tp[size_t(r * n + j)] = t[size_t(r * n + perm[size_t(j)])];
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) Hp[size_t(i * n + j)] = H[size_t(perm[size_t(i)] * n + perm[size_t(j)])];
  ldlq(tp, rows, n, Hp, maxq, o.block, q, name);
  if (o.npasses > 0) res.passes_run = greedy_passes(tp, rows, n, Hp, maxq, o.npasses, o.block, q);
  std::vector<uint8_t> codes(static_cast<size_t>(rows * n));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) codes[size_t(r * n + perm[size_t(j)])] = uint8_t(q[size_t(r * n + j)]);

  // The proxy loss tr(Δ H′ Δᵀ) / tr(W′ H′ W′ᵀ) with Δ = Ŵ′ − W′.
  {
    std::vector<double> delta(W.size()), DH(W.size()), WH(W.size());
    for (size_t i = 0; i < W.size(); ++i)
      delta[i] = double(s) * (2.0 * codes[i] - maxq) / double(maxq) - W[i];
    ops::gemm_f64(false, rows, n, n, 1.0, delta.data(), n, H.data(), n, 0.0, DH.data(), n);
    ops::gemm_f64(false, rows, n, n, 1.0, W.data(), n, H.data(), n, 0.0, WH.data(), n);
    double num = 0, den = 0;
    for (size_t i = 0; i < W.size(); ++i) num += DH[i] * delta[i], den += WH[i] * W[i];
    res.proxy = den > 0 ? num / den : 0;
    // ‖W − Ŵ‖_F / ‖W‖_F without the dense Ŵ: W − Ŵ = Uᵀ·(W′ − Ŵ′)·V·diag(1/d), and Uᵀ keeps the norm.
    for (int64_t r = 0; r < rows; ++r) rotate_ref(*V, &delta[size_t(r * n)], true);  // a row times V
    double e2 = 0, w2 = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) {
        const double e = delta[size_t(r * n + c)] / double(d[size_t(c)]);
        e2 += e * e;
        w2 += double(w_in[r * n + c]) * w_in[r * n + c];
      }
    res.rel_err = w2 > 0 ? std::sqrt(e2 / w2) : 0;
  }
  res.weight = make_quip(o.bits, rows, cols, codes.data(), s, d.data(), U, V);
  if (!dump.empty()) {
    std::vector<int32_t> c32(codes.begin(), codes.end());
    write_npy(dump / "codes.npy", c32.data(), {rows, cols}, "<i4");
    std::vector<double> d64(d.begin(), d.end());
    write_npy(dump / "d.npy", d64.data(), {cols}, "<f8");
    std::ofstream meta(dump / "meta.json");
    meta << fmt::format(
        "{{\"bits\": {}, \"scale\": {:.17g}, \"npasses\": {}, \"order\": \"{}\", \"rotation\": \"{}\", "
        "\"damp\": "
        "{:.17g}, \"passes_run\": {}, \"proxy\": {:.17g}}}\n",
        o.bits, double(s), o.npasses, o.sorted ? "ldlqRG" : "ldlq", rotation_kind_name(o.rotation), o.damp,
        res.passes_run, res.proxy);
  }
  return res;
}

// --- The method: GPTQ's sequential driver (QuIP's llama.py is GPTQ's) over the layer's linears. ---

namespace {

void quip_layer(LayerJob& job) {
  const QuantConfig& cfg = job.cfg;
  QuipOptions opt;
  opt.bits = cfg.wbits;
  opt.rotation =
      cfg.opt<std::string>("rotation") == "hadamard" ? RotationKind::Hadamard : RotationKind::Kronecker;
  opt.sorted = cfg.opt<std::string>("order") == "ldlqRG";
  opt.npasses = int(cfg.opt<int64_t>("npasses"));
  opt.damp = cfg.opt<double>("damp");
  const uint64_t key = subkey(subkey(uint64_t(cfg.opt<int64_t>("rot_seed")), 0x5155u), uint64_t(job.layer));
  quantize_layer_with_hessians(job, cfg.opt<bool>("true_sequential"), true, [&](LinearJob& lj) {
    opt.seed_u = subkey(key, 2 * uint64_t(lj.kind));
    opt.seed_v = subkey(key, 2 * uint64_t(lj.kind) + 1);
    opt.dump_dir = lj.dump_dir.string();
    QuipResult q = quip_quantize(lj.w.data(), lj.rows, lj.cols, std::move(lj.H64), opt, lj.name);
    LinearResult r;
    r.weight = std::move(q.weight);
    r.rel_err = q.rel_err;
    r.rel_err_given = true;  // quip_quantize has it; the reference dequantizer would rotate again
    r.loss = q.proxy;
    return r;
  });
}

}  // namespace

const Method& quip_method() {
  static const Method m = [] {
    Method m;
    m.name = "quip";
    m.label = "QuIP";
    m.summary = "QuIP (Chee et al. 2023): incoherence processing (random orthogonal U, V) + LDLQ rounding";
    m.needs_calibration = true;
    m.min_bits = 2;
    m.max_bits = 4;
    m.format = "quip";
    m.fixed_group = kPerChannel;
    MethodOption rotation{"rotation", OptionType::String, "kronecker",
                          "incoherence rotation: kronecker (QuIP) or hadamard (randomized Hadamard, QuIP#)"};
    rotation.choices = {"kronecker", "hadamard"};
    MethodOption order{"order", OptionType::String, "ldlq", "rounding order: ldlq, or ldlqRG (by diag H)"};
    order.choices = {"ldlq", "ldlqRG"};
    MethodOption npasses{"npasses", OptionType::Int, int64_t(1), "greedy refinement passes after LDLQ", 0,
                         100};
    MethodOption damp{"damp", OptionType::Number, 0.01, "relative dampening of H's diagonal", 0};
    damp.min_exclusive = true;
    m.options = {rotation,
                 order,
                 npasses,
                 damp,
                 {"rot_seed", OptionType::Int, int64_t(0), "seed of the random rotations", 0, 9.0e15},
                 {"true_sequential", OptionType::Bool, false, "q/k/v, then o, then gate/up, then down"}};
    m.quantize_layer = quip_layer;
    return m;
  }();
  return m;
}

}  // namespace lowbit

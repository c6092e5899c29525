// NF4 and ICQ, step by step as upstream computes them (every arithmetic step in f32 unless noted):
//
// bitsandbytes quantize_4bit(nf4, blocksize=64) (csrc/kernels.cu kQuantizeBlockwise<NF4>):
//   A_b = max |w| over the block; r = 1.0f / A_b; q = dQuantizeNF4(w·r)            (formats/nf4.h nf4_code)
// bitsandbytes compress_statistics=True (functional.quantize_4bit):
//   offset = absmax.mean(); absmax -= offset; quantize_blockwise(absmax, blocksize=256) on the dynamic map:
//   A2_s = max |A_b − offset| over the 256-block; a_b = dQuantize<0>((A_b − offset)·(1.0f / A2_s))
//   The codes above come from the exact f32 absmax: double quantization changes only what is stored for A_b.
//   The mean: PyTorch's f32 mean on the GPU sums in an unspecified order; lowbit sums in double in index
//   order and rounds the mean to f32 once (within an ulp of any order's result).
// IR-QLoRA ICQ (utils.py `search`, `nf4_quant`, `evaluate_entropy`), per block of 64:
//   τ0 = torch.median (the lower median: 32nd smallest of 64); A = max |w − τ0|;
//   f_k = np.linspace(−λσ, λσ, 2n + 1)[k] (float64), σ = 1/Φ⁻¹(0.9677083) as utils.py computes it;
//   τ_k = f32(f_k)·A + τ0 (f32: PyTorch rounds the Python scalar to f32 and does not fuse);
//   codes of w − τ_k by the NF4 quantizer above (from the exact f32 absmax of w − τ_k, so neither the entropy
//   nor the stored codes depend on double quantization), entropy of the block's 16 code frequencies, and the
//   k with the largest entropy (strict >: the earliest k wins ties). The stored codes are those of the
//   chosen τ_k in f32 (`search` quantizes W − τ once more with the same f32 τ); only the stored τ is 8-bit:
//   T2_s = max |τ| over 256 blocks, t_b = argmin |τ/T2 − map| (quantize_tensor, an f32 division).
//   Entropy: upstream evaluates −Σ p·log2 p in f32, whose rounding (an ulp is 4.8e-7 near H = 4) cannot
//   separate entropies closer than that and breaks exact ties (e.g. two histograms that are permutations of
//   each other) by summation order. lowbit compares the exact entropy instead (icq_entropy_key), so a tie is
//   a tie and the earliest candidate wins, as the strict > intends.
//   Where upstream needs W to reshape to (−1, 256, 64), lowbit lets the last group of 256 blocks be shorter;
//   upstream's search runs in the dtype of its FP model copy, lowbit's in f32.
#include "quant/methods/nf4.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "core/error.h"
#include "core/parallel.h"
#include "quant/quantize.h"

namespace lowbit {

namespace {

// 1 / Φ⁻¹(0.9677083) as IR-QLoRA's utils.py evaluates it: norm.ppf of the float32 torch.linspace entry
// f32(0.9677083), which scipy returns as float32 (ndtri's f->f loop), inverted in double.
// Φ⁻¹(f32(0.9677083)) = 1.8481308162625247, as float32 1.8481308221817017 (tools/ref_nf4.py recomputes it).
constexpr double kIcqSigma = 0.5410872368978237;

// Σ c·log2(c) per count c in 0..64 in units of 2⁻⁴⁰, built from the prime factorisation of c with one
// rounded log2 per prime, so that sums of these terms are exactly additive (see icq_entropy_key).
const std::array<int64_t, 65>& entropy_terms() {
  static const std::array<int64_t, 65> t = [] {
    std::array<int64_t, 65> out{};
    for (int c = 2; c <= 64; ++c) {
      int64_t s = 0;
      int m = c;
      for (int p = 2; p <= m; ++p)
        while (m % p == 0) {
          s += int64_t(c) * std::llround(std::log2(double(p)) * 1099511627776.0);  // 2^40
          m /= p;
        }
      out[size_t(c)] = s;
    }
    return out;
  }();
  return t;
}

// numpy.linspace(start, stop, num)[k] in float64 (numpy/core/function_base.py): k·step + start with step =
// (stop − start)/(num − 1), and the last entry exactly stop.
double np_linspace(double start, double stop, int64_t num, int64_t k) {
  if (k == num - 1) return stop;
  const double step = (stop - start) / double(num - 1);
  volatile double scaled = double(k) * step;  // rounded on its own, as NumPy does (no FMA contraction)
  return scaled + start;
}

// The NF4 codes of the 64 values v and their absmax, as kQuantizeBlockwise<NF4> computes them.
float block_codes(const float* v, uint8_t* q) {
  float absmax = 0;
  for (int i = 0; i < kNf4Block; ++i) absmax = std::max(absmax, std::fabs(v[i]));
  const float r = 1.0f / absmax;
  for (int i = 0; i < kNf4Block; ++i) q[i] = nf4_code(v[i] * r);
  return absmax;
}

struct Nf4Storage {
  std::vector<uint8_t> codes, absmax_q, tau_q;
  std::vector<float> absmax, absmax2, tau2;
};

}  // namespace

int64_t icq_entropy_key(const int* counts16) {
  const std::array<int64_t, 65>& t = entropy_terms();
  int64_t s = 0;
  for (int k = 0; k < 16; ++k) s += t[size_t(counts16[k])];
  return s;
}

IcqChoice icq_search(const float* w, int64_t n, double lambda, int n_steps) {
  if (n % kNf4Block != 0) fail("icq_search: {} weights is not a whole number of blocks of {}", n, kNf4Block);
  if (n_steps < 1) fail("icq_search: {} steps (need at least 1)", n_steps);
  const int64_t nb = n / kNf4Block, num = 2 * int64_t(n_steps) + 1;
  // utils.py: np.linspace(-tau_range*sigma, tau_range*sigma, tau_n*2+1); torch then rounds each to f32.
  const double hi = lambda * kIcqSigma;
  std::vector<float> factor(static_cast<size_t>(num));
  for (int64_t k = 0; k < num; ++k) factor[size_t(k)] = float(np_linspace(-hi, hi, num, k));
  IcqChoice out;
  out.index.resize(size_t(nb));
  out.tau.resize(size_t(nb));
  parallel_for(
      nb,
      [&](int64_t b) {
        const float* x = w + b * kNf4Block;
        std::array<float, kNf4Block> sorted, v;
        std::copy(x, x + kNf4Block, sorted.begin());
        std::nth_element(sorted.begin(), sorted.begin() + 31, sorted.end());
        const float tau0 = sorted[31];  // torch.median: the lower of the two middle values
        float a = 0;
        for (int i = 0; i < kNf4Block; ++i) a = std::max(a, std::fabs(x[i] - tau0));
        int64_t best = 0;
        for (int64_t k = 0; k < num; ++k) {
          const float tau = rounded_product(factor[size_t(k)], a) + tau0;
          for (int i = 0; i < kNf4Block; ++i) v[size_t(i)] = x[i] - tau;
          std::array<uint8_t, kNf4Block> q;
          block_codes(v.data(), q.data());
          int counts[16] = {};
          for (uint8_t c : q) ++counts[c];
          const int64_t key = icq_entropy_key(counts);  // smaller key = larger entropy
          if (k == 0 || key < best) {
            best = key;
            out.index[size_t(b)] = int32_t(k);
            out.tau[size_t(b)] = tau;
          }
        }
      },
      64, nb >= 64);
  return out;
}

std::shared_ptr<const Nf4Weight> quantize_nf4(const float* w, int64_t rows, int64_t cols,
                                              const Nf4Options& o) {
  if (rows <= 0 || cols <= 0) fail("nf4: bad shape ({}, {})", rows, cols);
  if (cols % kNf4Block != 0)
    fail("nf4: in_features {} is not a multiple of {} (NF4 quantizes blocks of {} weights within a row)",
         cols, kNf4Block, kNf4Block);
  const int64_t n = rows * cols, nb = n / kNf4Block, ns = (nb + kNf4SuperBlock - 1) / kNf4SuperBlock;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(w[i])) fail("nf4: weight [{}, {}] = {} is not finite", i / cols, i % cols, w[i]);
  IcqChoice icq;
  if (o.icq) icq = icq_search(w, n, o.icq_lambda, o.icq_n);

  auto st = std::make_shared<Nf4Storage>();
  st->codes.assign(size_t(n / 2), 0);
  std::vector<float> absmax(static_cast<size_t>(nb));
  parallel_for(
      nb,
      [&](int64_t b) {
        std::array<float, kNf4Block> v;
        for (int i = 0; i < kNf4Block; ++i)
          v[size_t(i)] = o.icq ? w[b * kNf4Block + i] - icq.tau[size_t(b)] : w[b * kNf4Block + i];
        std::array<uint8_t, kNf4Block> q;
        absmax[size_t(b)] = block_codes(v.data(), q.data());
        uint8_t* p = st->codes.data() + b * kNf4Block / 2;
        for (int i = 0; i < kNf4Block; i += 2) p[i / 2] = uint8_t(q[size_t(i)] << 4 | q[size_t(i) + 1]);
      },
      256, n >= (int64_t(1) << 16));

  auto q = std::make_shared<Nf4Weight>();
  q->rows = rows, q->cols = cols;
  if (o.double_quant) {
    double sum = 0;
    for (float a : absmax) sum += a;
    const float offset = float(sum / double(nb));
    st->absmax_q.resize(size_t(nb));
    st->absmax2.resize(size_t(ns));
    for (int64_t s = 0; s < ns; ++s) {
      const int64_t b0 = s * kNf4SuperBlock, b1 = std::min(nb, b0 + kNf4SuperBlock);
      float a2 = 0;
      for (int64_t b = b0; b < b1; ++b) a2 = std::max(a2, std::fabs(absmax[size_t(b)] - offset));
      st->absmax2[size_t(s)] = a2;
      const float r = 1.0f / a2;
      for (int64_t b = b0; b < b1; ++b)
        st->absmax_q[size_t(b)] = dynamic_map_code((absmax[size_t(b)] - offset) * r);
    }
    q->absmax_q = st->absmax_q.data();
    q->absmax2 = st->absmax2.data();
    q->absmax_offset = offset;
  } else {
    st->absmax = std::move(absmax);
    q->absmax = st->absmax.data();
  }
  if (o.icq) {
    st->tau_q.resize(size_t(nb));
    st->tau2.resize(size_t(ns));
    for (int64_t s = 0; s < ns; ++s) {
      const int64_t b0 = s * kNf4SuperBlock, b1 = std::min(nb, b0 + kNf4SuperBlock);
      float t2 = 0;
      for (int64_t b = b0; b < b1; ++b) t2 = std::max(t2, std::fabs(icq.tau[size_t(b)]));
      st->tau2[size_t(s)] = t2;
      for (int64_t b = b0; b < b1; ++b) st->tau_q[size_t(b)] = dynamic_map_nearest(icq.tau[size_t(b)] / t2);
    }
    q->tau_q = st->tau_q.data();
    q->tau2 = st->tau2.data();
  }
  q->codes = st->codes.data();
  q->owner = st;
  return q;
}

// --- The method: every linear on its own, no calibration. ---

namespace {

void nf4_layer(LayerJob& job) {
  const QuantConfig& cfg = job.cfg;
  Nf4Options o;
  o.double_quant = cfg.opt<bool>("double_quant");
  o.icq = cfg.opt<bool>("icq");
  o.icq_lambda = cfg.opt<double>("icq_lambda");
  o.icq_n = int(cfg.opt<int64_t>("icq_n"));
  quantize_each_linear(job, [&](const std::vector<float>& w, int64_t rows, int64_t cols) {
    return quantize_nf4(w.data(), rows, cols, o);
  });
}

}  // namespace

const Method& nf4_method() {
  static const Method m = [] {
    Method m;
    m.name = "nf4";
    m.label = "NormalFloat";
    m.summary =
        "QLoRA's 4-bit NormalFloat (bitsandbytes nf4: blocks of 64, double-quantized absmax), optionally "
        "with "
        "IR-QLoRA's ICQ shift (no calibration)";
    m.min_bits = m.max_bits = 4;
    m.format = "nf4";
    m.fixed_group = int(kNf4Block);
    MethodOption lambda{"icq_lambda",
                        OptionType::Number,
                        0.1,
                        "ICQ search range ±λσ around the block median (IR-QLoRA tau_range)",
                        0,
                        1,
                        true,
                        {},
                        ""};
    MethodOption steps{"icq_n", OptionType::Int, 100,   "ICQ tries 2n+1 shifts per block (IR-QLoRA tau_n)",
                       1,       10000,           false, {},
                       ""};
    m.options = {{"double_quant", OptionType::Bool, true,
                  "8-bit block absmax with one f32 per 256 blocks (bitsandbytes compress_statistics; "
                  "--double-quant=false stores f32 absmax)"},
                 {"icq", OptionType::Bool, false,
                  "IR-QLoRA information calibration: a per-block shift chosen for maximal code entropy"},
                 lambda,
                 steps};
    m.quantize_layer = nf4_layer;
    return m;
  }();
  return m;
}

}  // namespace lowbit

#include "train/lora.h"

#include <cmath>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/ops.h"

namespace lowbit {

namespace {

// x with dropout applied (kept elements scaled by 1/(1 − p), as torch's Dropout), or x itself when p = 0.
const float* dropped(const float* x, int64_t n, int64_t in, double p, uint64_t key, std::vector<float>& buf) {
  if (p <= 0) return x;
  buf.resize(size_t(n * in));
  const float keep_scale = float(1.0 / (1.0 - p));
  for (int64_t i = 0; i < n * in; ++i)
    buf[size_t(i)] = uniform01(key, uint64_t(i)) < p ? 0.0f : x[i] * keep_scale;
  return buf.data();
}

}  // namespace

void LoraAdapter::forward(const float* x, int64_t n, float* y, Saved& saved, uint64_t key, bool train) const {
  std::vector<float> buf;
  const float* xd = dropped(x, n, in, train ? dropout : 0.0, key, buf);
  saved.h.resize(size_t(n * r));
  float* h = saved.h.data();  // (n, r)
  // h (n, r) = xd (n, in) · Aᵀ
  ops::gemm(true, n, r, in, 1.0f, xd, in, A.data(), in, 0.0f, h, r);
  const int64_t ci = in / r, co = out / r;
  if (iec) {  // h += β_A · chunkmean_r(x): the undropped input, as upstream
    for (int64_t t = 0; t < n; ++t)
      for (int k = 0; k < r; ++k) {
        float s = 0;
        for (int64_t j = 0; j < ci; ++j) s += x[t * in + k * ci + j];
        h[t * r + k] += beta_a * (s / float(ci));
      }
  }
  // y (n, out) += scale · h · Bᵀ
  ops::gemm(true, n, out, r, scale, h, r, B.data(), r, 1.0f, y, out);
  if (iec)  // y += scale · β_B · repeat(h)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < out; ++j) y[t * out + j] += scale * (beta_b * h[t * r + j / co]);
}

void LoraAdapter::backward(const float* x, int64_t n, const float* dy, const Saved& saved, uint64_t key,
                           float* dx) {
  const float* h = saved.h.data();
  const int64_t ci = in / r, co = out / r;
  // dB (out, r) += scale · dyᵀ · h
  ops::gemm_at(out, r, n, scale, dy, out, h, r, 1.0f, dB.data(), r);
  // dh (n, r) = scale · dy · B (+ the repeat path's scale · β_B · Σ_chunk dy)
  std::vector<float> dh(size_t(n * r));
  ops::gemm(false, n, r, out, scale, dy, out, B.data(), r, 0.0f, dh.data(), r);
  if (iec) {
    double db = 0, da = 0;
    for (int64_t t = 0; t < n; ++t)
      for (int k = 0; k < r; ++k) {
        double s = 0;
        for (int64_t j = 0; j < co; ++j) s += dy[t * out + k * co + j];
        db += s * h[t * r + k];
        dh[size_t(t * r + k)] += float(scale * beta_b * s);
      }
    dbeta_b += float(scale * db);
    for (int64_t t = 0; t < n; ++t)
      for (int k = 0; k < r; ++k) {
        float m = 0;
        for (int64_t j = 0; j < ci; ++j) m += x[t * in + k * ci + j];
        da += double(dh[size_t(t * r + k)]) * (m / float(ci));
      }
    dbeta_a += float(da);
  }
  std::vector<float> buf;
  const float* xd = dropped(x, n, in, dropout, key, buf);
  // dA (r, in) += dhᵀ · xd
  ops::gemm_at(r, in, n, 1.0f, dh.data(), r, xd, in, 1.0f, dA.data(), in);
  // dx (n, in) += dropout'(dh · A) (+ β_A · dh_k / ci over chunk k)
  if (dropout <= 0) {
    ops::gemm(false, n, in, r, 1.0f, dh.data(), r, A.data(), in, 1.0f, dx, in);
  } else {
    std::vector<float> g(size_t(n * in));
    ops::gemm(false, n, in, r, 1.0f, dh.data(), r, A.data(), in, 0.0f, g.data(), in);
    const float keep_scale = float(1.0 / (1.0 - dropout));
    for (int64_t i = 0; i < n * in; ++i)
      if (uniform01(key, uint64_t(i)) >= dropout) dx[i] += g[size_t(i)] * keep_scale;
  }
  if (iec)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < in; ++j) dx[t * in + j] += beta_a * (dh[size_t(t * r + j / ci)] / float(ci));
}

void LoraAdapter::folded(std::vector<float>& Ap, std::vector<float>& Bp) const {
  Ap = A;
  Bp = B;
  if (!iec) return;
  const int64_t ci = in / r, co = out / r;
  for (int k = 0; k < r; ++k)
    for (int64_t j = 0; j < ci; ++j) Ap[size_t(k * in + k * ci + j)] += beta_a / float(ci);
  for (int64_t j = 0; j < out; ++j) Bp[size_t(j * r + j / co)] += beta_b;
}

std::vector<float> LoraAdapter::delta() const {
  std::vector<float> Ap, Bp, dw(size_t(out * in));
  folded(Ap, Bp);
  ops::gemm(false, out, in, r, scale, Bp.data(), r, Ap.data(), in, 0.0f, dw.data(), in);  // scale · B' A'
  return dw;
}

void LoraAdapter::zero_grad() {
  std::fill(dA.begin(), dA.end(), 0.0f);
  std::fill(dB.begin(), dB.end(), 0.0f);
  dbeta_a = dbeta_b = 0;
}

LoraSet::LoraSet(const LlamaModel& model, const LoraConfig& cfg) : cfg_(cfg) {
  n_layer_ = model.config().n_layer;
  if (cfg.rank <= 0) fail("LoRA rank must be positive, got {}", cfg.rank);
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) fail("LoRA dropout must be in [0, 1), got {}", cfg.dropout);
  adapters_.resize(size_t(n_layer_) * 7);
  for (int l = 0; l < n_layer_; ++l)
    for (LinearKind k : cfg.targets) {
      const Linear& w = model.linear(l, k);
      LoraAdapter& a = adapters_[size_t(l * 7 + int(k))];
      a.in = w.cols();
      a.out = w.rows();
      a.r = cfg.rank;
      a.scale = float(cfg.alpha / cfg.rank);
      a.dropout = cfg.dropout;
      a.iec = cfg.iec;
      if (cfg.iec && (a.in % a.r != 0 || a.out % a.r != 0))
        fail(
            "IEC needs the LoRA rank to divide each targeted linear's widths: layer {} {} is ({}, {}), rank "
            "{}",
            l, linear_name(k), a.out, a.in, a.r);
      // kaiming_uniform_(a=√5) on (r, in): gain √(2/(1+5)), bound = gain·√(3/in) = 1/√in.
      const double bound = 1.0 / std::sqrt(double(a.in));
      const uint64_t key = subkey(cfg.seed, uint64_t(l * 7 + int(k)));
      a.A.resize(size_t(a.r * a.in));
      for (size_t i = 0; i < a.A.size(); ++i) a.A[i] = float((2 * uniform01(key, i) - 1) * bound);
      a.B.assign(size_t(a.out * a.r), 0.0f);
      a.dA.assign(a.A.size(), 0.0f);
      a.dB.assign(a.B.size(), 0.0f);
    }
}

LoraAdapter* LoraSet::find(int layer, LinearKind k) {
  LOWBIT_ASSERT(layer >= 0 && layer < n_layer_);
  LoraAdapter& a = adapters_[size_t(layer * 7 + int(k))];
  return a.r > 0 ? &a : nullptr;
}

const LoraAdapter* LoraSet::find(int layer, LinearKind k) const {
  return const_cast<LoraSet*>(this)->find(layer, k);
}

std::vector<LoraSet::Entry> LoraSet::entries() {
  std::vector<Entry> out;
  for (int l = 0; l < n_layer_; ++l)
    for (LinearKind k : kAllLinears)
      if (LoraAdapter* a = find(l, k))
        out.push_back({"model.layers." + std::to_string(l) + "." + linear_name(k), l, k, a});
  return out;
}

void LoraSet::zero_grad() {
  for (LoraAdapter& a : adapters_) a.zero_grad();
}

}  // namespace lowbit

namespace lowbit {

void attach_adapters(LlamaModel& model, LoraSet& lora) {
  for (auto& e : lora.entries()) {
    auto d = std::make_shared<LowRank>();
    d->r = e.adapter->r;
    d->scale = e.adapter->scale;
    e.adapter->folded(d->A, d->B);
    Linear w = model.linear(e.layer, e.kind);
    w.delta = std::move(d);
    model.set_linear(e.layer, e.kind, std::move(w));
  }
}

void merge_adapters(LlamaModel& model, LoraSet& lora) {
  for (auto& e : lora.entries()) {
    const Linear& cur = model.linear(e.layer, e.kind);
    if (cur.input) fail("merge: layer {} {} has an input transform", e.layer, linear_name(e.kind));
    std::vector<float> w = linear_to_f32(cur);
    const std::vector<float> dw = e.adapter->delta();
    for (size_t i = 0; i < w.size(); ++i) w[i] += dw[i];
    const int64_t rows = cur.rows(), cols = cur.cols();
    model.set_linear(e.layer, e.kind, owned_f32_linear(std::move(w), rows, cols));
  }
}

}  // namespace lowbit

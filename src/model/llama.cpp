// LLaMA forward (Touvron et al. 2023): pre-norm decoder blocks of RMSNorm -> GQA attention with RoPE ->
// residual, RMSNorm -> SwiGLU MLP -> residual; final RMSNorm and LM head. All arithmetic in fp32, following
// HF transformers' LlamaForCausalLM in float32 so results match the PyTorch references to rounding.
#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "core/error.h"
#include "core/parallel.h"
#include "io/packed_tensors.h"
#include "kernels/ops.h"

namespace lowbit {

namespace {

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;  // (d)
  // Indexed by LinearKind: q (H*hd, d), k (Hkv*hd, d), v (Hkv*hd, d), o (d, H*hd), gate (f, d), up (f, d),
  // down (d, f).
  Linear lin[7];
};

DenseWeight dense(const TensorView& t) {
  DenseWeight w;
  w.dtype = t.dtype;
  w.data = t.data;
  w.rows = t.shape.at(0);
  w.cols = t.shape.size() > 1 ? t.shape[1] : 1;
  return w;
}

Linear dense_linear(const TensorView& t) {
  Linear l;
  l.dense = dense(t);
  return l;
}

std::vector<float> widen(const TensorView& t) {
  std::vector<float> v(size_t(t.numel()));
  widen_to_f32(t.dtype, t.data, v.data(), v.size());
  return v;
}

// RoPE inverse frequencies, computed in float32 as HF does: 1 / theta^(2i/hd), then llama3 scaling
// (Meta's LLaMA-3.1 "apply_scaling": long wavelengths divided by `factor`, short ones kept, smooth in
// between).
std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int half = c.head_dim / 2;
  std::vector<float> f(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i) {
    float expo = float(2 * i) / float(c.head_dim);
    f[size_t(i)] = 1.0f / std::pow(float(c.rope_theta), expo);
  }
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "llama3") {
    const double old_ctx = s.original_max_position_embeddings;
    const double low_wavelen = old_ctx / s.low_freq_factor, high_wavelen = old_ctx / s.high_freq_factor;
    for (float& x : f) {
      double wavelen = 2 * std::numbers::pi / x;
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        x = float(x / s.factor);
      } else {
        double smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        x = float((1 - smooth) * x / s.factor + smooth * x);
      }
    }
  } else if (!s.type.empty()) {
    fail("rope_scaling type '{}' is not supported", s.type);
  }
  return f;
}

// Rows of a branch batch (forward_branches). The rows form groups [groups[j], groups[j+1]), whose keys are
// the p0 cached slots followed by the group's own slots. Per row (n), relative to its group: the position,
// and the keys it sees in that layout, [0, base[i]) and [p0 + seg[i], p0 + i - group start].
struct BranchRows {
  std::vector<int> groups;
  std::vector<int> pos, base, seg;
};

}  // namespace

const char* linear_name(LinearKind k) {
  static const char* names[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                "mlp.down_proj"};
  return names[int(k)];
}

InputSite input_site(LinearKind k) {
  switch (k) {
    case LinearKind::Q:
    case LinearKind::K:
    case LinearKind::V:
      return InputSite::AttnIn;
    case LinearKind::O:
      return InputSite::OIn;
    case LinearKind::Gate:
    case LinearKind::Up:
      return InputSite::MlpIn;
    case LinearKind::Down:
      return InputSite::DownIn;
  }
  return InputSite::AttnIn;
}

struct LlamaModel::Impl {
  Checkpoint ckpt;
  ModelConfig cfg;
  TensorView embed;  // (V, d)
  std::vector<LayerWeights> layers;
  std::vector<float> out_norm;  // (d)
  DenseWeight head;             // (V, d)
  std::vector<float> head_f32;  // (V, d) when keep_f32_weights() widened the head
  std::vector<float> inv_freq;  // (hd/2)

  // Rotates each head of x (n, n_heads*hd) in place for positions p0..p0+n-1, or pos[0..n) when given.
  void rope(float* x, int64_t n, int n_heads, int p0, const int* pos_of = nullptr) const {
    ops::rope(x, n, n_heads, cfg.head_dim, inv_freq.data(), cfg.rope_style == RopeStyle::Interleaved, p0,
              pos_of);
  }

  // att (n, H*hd) = softmax(q kᵀ / sqrt(hd) + causal mask) v, over the n_past + n cached positions of layer
  // l. With br (a branch batch, see forward_branches), row i sees slots [0, base[i]) and its own run
  // [p0 + seg[i], p0 + i] only. With out (ascending rows of the batch), q and att hold just those rows.
  void attention(const float* q, const KVCache& cache, int l, int64_t n, int p0, float* att,
                 const BranchRows* br = nullptr, const std::vector<int>* out = nullptr) const {
    const int hd = cfg.head_dim, H = cfg.n_head, group = cfg.n_head / cfg.n_kv_head;
    const int kv = cache.kv_dim, qs = H * hd;
    const float scale = 1.0f / std::sqrt(float(hd));
    const float* K = cache.k.data() + size_t(l) * cache.max_seq * kv;  // (max_seq, kv)
    const float* V = cache.v.data() + size_t(l) * cache.max_seq * kv;
    if (n <= 4 && !br) {  // decode: one query row per head, plain loops parallel over heads
      const int T = p0 + int(n);
      std::vector<float> scores(size_t(H) * T);
      parallel_rows(
          H,
          [&](int64_t h) {
            const int64_t g = h / group;
            float* s = scores.data() + size_t(h) * T;
            for (int64_t t = 0; t < n; ++t) {
              const int len = p0 + int(t) + 1;
              const float* qh = q + t * qs + h * hd;
              for (int j = 0; j < len; ++j)
                s[j] = dot_f32(qh, K + size_t(j) * kv + g * hd, size_t(hd)) * scale;
              softmax_inplace(s, size_t(len));
              float* o = att + t * qs + h * hd;
              std::fill(o, o + hd, 0.0f);
              for (int j = 0; j < len; ++j) {
                const float p = s[j];
                const float* vj = V + size_t(j) * kv + g * hd;
                for (int i = 0; i < hd; ++i) o[i] += p * vj[i];
              }
            }
          },
          int64_t(H) * (p0 + n) * hd >= (int64_t(1) << 14));
      return;
    }
    // Prefill: per head, row blocks of queries; block [r0, r1) attends to keys [0, p0 + r1) (causal), so the
    // upper triangle beyond the block is never computed. A branch batch runs each group (example) on its own:
    // its keys are the p0 cached slots followed by the group's own slots, laid side by side in S, and row
    // visibility is relative to that layout.
    constexpr int64_t kBlock = 256;
    const std::vector<int> whole = {0, int(n)};
    const std::vector<int>& groups = br ? br->groups : whole;
    int64_t widest = 0;
    for (size_t gi = 0; gi + 1 < groups.size(); ++gi)
      widest = std::max<int64_t>(widest, groups[gi + 1] - groups[gi]);
    UninitVector<float> S(size_t(kBlock) * size_t(p0 + widest));                    // written before read
    auto row_of = [&](int64_t j) { return out ? int64_t((*out)[size_t(j)]) : j; };  // query j's batch row
    const int64_t n_q = out ? int64_t(out->size()) : n;
    for (size_t gi = 0, j0 = 0; gi + 1 < groups.size(); ++gi) {
      const int64_t gb = groups[gi];
      int64_t j1 = j0;  // queries [j0, j1) are this group's rows
      while (j1 < n_q && row_of(j1) < groups[gi + 1]) ++j1;
      for (int h = 0; h < H; ++h) {
        const int g = h / group;
        for (int64_t jb = int64_t(j0); jb < j1; jb += kBlock) {
          const int64_t rb = std::min(kBlock, j1 - jb);
          const int64_t own_keys = row_of(jb + rb - 1) - gb + 1, T = p0 + own_keys;
          const float* qb = q + jb * qs + h * hd;
          const float* Kg = K + size_t(p0 + gb) * kv + g * hd;  // the group's first slot
          const float* Vg = V + size_t(p0 + gb) * kv + g * hd;
          // S (rb, T) = scale · Q_h[rows] (rb, hd) · [K_g[0:p0]; K_g[group slots]]ᵀ (hd, T); one call when
          // the two are adjacent (the first group).
          if (gb == 0 || p0 == 0) {
            ops::gemm(true, int(rb), int(T), hd, scale, qb, qs, gb == 0 ? K + g * hd : Kg, kv, 0.0f, S.data(),
                      int(T));
          } else {
            ops::gemm(true, int(rb), p0, hd, scale, qb, qs, K + g * hd, kv, 0.0f, S.data(), int(T));
            ops::gemm(true, int(rb), int(own_keys), hd, scale, qb, qs, Kg, kv, 0.0f, S.data() + p0, int(T));
          }
          parallel_rows(rb, [&](int64_t i) {
            float* s = S.data() + i * T;
            const int64_t row = row_of(jb + i);
            const int64_t len = p0 + row - gb + 1;  // keys up to this query's own slot
            if (!br) {
              softmax_inplace(s, size_t(len));
              std::fill(s + len, s + T, 0.0f);
              return;
            }
            // Branch row: keys [0, base) and [p0 + from, len). Slide the second run down next to the first,
            // take the softmax of the now contiguous visible keys (the order a lone sequence would sum them
            // in), slide it back and zero the rest, so P·V adds exact zeros for the hidden keys.
            const int64_t base = br->base[size_t(row)], from = p0 + br->seg[size_t(row)], own = len - from;
            std::memmove(s + base, s + from, size_t(own) * sizeof(float));
            softmax_inplace(s, size_t(base + own));
            std::memmove(s + from, s + base, size_t(own) * sizeof(float));
            std::fill(s + base, s + from, 0.0f);
            std::fill(s + len, s + T, 0.0f);
          });
          // out_h[rows] (rb, hd) = P (rb, T) · [V_g[0:p0]; V_g[group slots]] (T, hd)
          float* ob = att + jb * qs + h * hd;
          if (gb == 0 || p0 == 0) {
            ops::gemm(false, int(rb), hd, int(T), 1.0f, S.data(), int(T), gb == 0 ? V + g * hd : Vg, kv, 0.0f,
                      ob, qs);
          } else {
            ops::gemm(false, int(rb), hd, p0, 1.0f, S.data(), int(T), V + g * hd, kv, 0.0f, ob, qs);
            ops::gemm(false, int(rb), hd, int(own_keys), 1.0f, S.data() + p0, int(T), Vg, kv, 1.0f, ob, qs);
          }
        }
      }
      j0 = size_t(j1);
    }
  }

  // Block l on x (n, d) in place; keys/values go to cache rows n_past..n_past+n-1. br: a branch batch's
  // positions and visibility (forward_branches), else rows are consecutive positions under a causal mask.
  // out (ascending batch rows; branch batches only): only these rows' outputs are needed (the last layer
  // before the head), so the others get just their keys and values; x's other rows are left as they were.
  void block(int l, float* x, int64_t n, KVCache& cache, BlockObserver* obs, const BranchRows* br,
             const std::vector<int>* out = nullptr) const {
    const Impl& m = *this;
    const ModelConfig& c = m.cfg;
    const int p0 = cache.n_past;
    const int d = c.n_embd, hd = c.head_dim, H = c.n_head, kv = c.n_kv_head * hd, f = c.n_ff;
    if (l < 0 || l >= c.n_layer) fail("layer {} out of range", l);
    if (p0 + n > cache.max_seq)
      fail("sequence of {} tokens exceeds the KV cache size {}", p0 + n, cache.max_seq);
    if (cache.kv_dim != kv) fail("KV cache does not belong to this model");
    const size_t nd = size_t(n * d);
    // Uninitialized: every element is written before it is read, and zero-filling them would cost more
    // than the norms and residual adds of a short forward.
    UninitVector<float> xn(nd), tmp(nd);                                 // (n, d)
    UninitVector<float> q(size_t(n * H * hd)), att(size_t(n * H * hd));  // (n, H*hd)
    UninitVector<float> g(size_t(n * f)), u(size_t(n * f));              // (n, f)
    const LayerWeights& L = m.layers[size_t(l)];
    auto lin = [&](LinearKind k) -> const Linear& { return L.lin[int(k)]; };

    ops::rms_norm(x, L.attn_norm.data(), n, d, c.norm_eps, xn.data());
    if (obs) obs->observe(l, InputSite::AttnIn, xn.data(), n, d);
    // k, v (n, Hkv*hd) go straight into the cache rows p0..p0+n-1.
    float* Kc = cache.k.data() + (size_t(l) * cache.max_seq + p0) * kv;
    float* Vc = cache.v.data() + (size_t(l) * cache.max_seq + p0) * kv;
    ops::linear(lin(LinearKind::K), xn.data(), n, Kc);
    ops::linear(lin(LinearKind::V), xn.data(), n, Vc);
    m.rope(Kc, n, c.n_kv_head, p0, br ? br->pos.data() : nullptr);
    // From here on, the rows whose outputs are needed: all, or `out` gathered into xo (the residual stream).
    const int64_t nq = out ? int64_t(out->size()) : n;
    const int* qpos = br ? br->pos.data() : nullptr;
    std::vector<int> out_pos;
    UninitVector<float> xo;
    float* xr = x;
    if (out) {
      if (nq == 0) return;
      LOWBIT_ASSERT(br);
      xo.resize(size_t(nq * d));
      out_pos.resize(size_t(nq));
      // Gathered in place in xn: out ascends, so row out[j] >= j is never a row already overwritten.
      for (int64_t j = 0; j < nq; ++j) {
        const int r = (*out)[size_t(j)];
        std::copy_n(x + int64_t(r) * d, d, xo.data() + j * d);
        if (r != j) std::copy_n(xn.data() + int64_t(r) * d, d, xn.data() + j * d);  // their normed inputs
        out_pos[size_t(j)] = br->pos[size_t(r)];
      }
      xr = xo.data();
      qpos = out_pos.data();
    }
    ops::linear(lin(LinearKind::Q), xn.data(), nq, q.data());
    m.rope(q.data(), nq, H, p0, qpos);
    m.attention(q.data(), cache, l, n, p0, att.data(), br, out);
    if (obs) obs->observe(l, InputSite::OIn, att.data(), nq, H * hd);
    ops::linear(lin(LinearKind::O), att.data(), nq, tmp.data());
    const size_t nqd = size_t(nq * d);
    for (size_t i = 0; i < nqd; ++i) xr[i] += tmp[i];

    ops::rms_norm(xr, L.ffn_norm.data(), nq, d, c.norm_eps, xn.data());
    if (obs) obs->observe(l, InputSite::MlpIn, xn.data(), nq, d);
    ops::linear(lin(LinearKind::Gate), xn.data(), nq, g.data());
    ops::linear(lin(LinearKind::Up), xn.data(), nq, u.data());
    // SwiGLU (Shazeer 2020): silu(gate) * up, in chunks across threads for long prefills
    const int64_t n_gate = nq * f, chunk = int64_t(1) << 14;
    parallel_rows((n_gate + chunk - 1) / chunk,
                  [&](int64_t ci) {
                    const int64_t c0 = ci * chunk;
                    silu_mul(g.data() + c0, u.data() + c0, size_t(std::min(chunk, n_gate - c0)));
                  },
                  n_gate > 2 * chunk);
    if (obs) obs->observe(l, InputSite::DownIn, g.data(), nq, f);
    ops::linear(lin(LinearKind::Down), g.data(), nq, tmp.data());
    for (size_t i = 0; i < nqd; ++i) xr[i] += tmp[i];
    if (out)
      for (int64_t j = 0; j < nq; ++j) std::copy_n(xo.data() + j * d, d, x + int64_t((*out)[size_t(j)]) * d);
  }
};

LlamaModel::LlamaModel(Checkpoint ckpt) : impl_(std::make_unique<Impl>()) {
  validate_llama_tensors(ckpt);
  Impl& m = *impl_;
  m.ckpt = std::move(ckpt);
  m.cfg = m.ckpt.config;
  const auto& c = m.cfg;
  if (c.head_dim % 2 != 0) fail("{}: head_dim {} must be even for RoPE", m.ckpt.path, c.head_dim);
  m.embed = m.ckpt.get("model.embed_tokens.weight");
  m.layers.resize(size_t(c.n_layer));
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights& L = m.layers[size_t(l)];
    L.attn_norm = widen(m.ckpt.get(p + "input_layernorm.weight"));
    L.ffn_norm = widen(m.ckpt.get(p + "post_attention_layernorm.weight"));
    for (LinearKind k : kAllLinears) {
      const std::string name = p + linear_name(k);
      if (packed_format_of(m.ckpt, name)) {
        const int64_t rows = k == LinearKind::Q                         ? int64_t(c.n_head) * c.head_dim
                             : k == LinearKind::K || k == LinearKind::V ? int64_t(c.n_kv_head) * c.head_dim
                             : k == LinearKind::Gate || k == LinearKind::Up ? c.n_ff
                                                                            : c.n_embd;
        const int64_t cols = k == LinearKind::O      ? int64_t(c.n_head) * c.head_dim
                             : k == LinearKind::Down ? c.n_ff
                                                     : c.n_embd;
        L.lin[int(k)] = packed_linear(packed_linear_view(m.ckpt, name, rows, cols));
      } else {
        L.lin[int(k)] = dense_linear(m.ckpt.get(name + ".weight"));
      }
    }
  }
  m.out_norm = widen(m.ckpt.get("model.norm.weight"));
  m.head =
      dense(c.tie_word_embeddings && !m.ckpt.has("lm_head.weight") ? m.embed : m.ckpt.get("lm_head.weight"));
  m.inv_freq = rope_inv_freq(c);
}

LlamaModel::~LlamaModel() = default;

const ModelConfig& LlamaModel::config() const {
  return impl_->cfg;
}
const Checkpoint& LlamaModel::checkpoint() const {
  return impl_->ckpt;
}

KVCache LlamaModel::new_cache(int max_seq) const {
  const auto& c = impl_->cfg;
  KVCache kc;
  kc.max_seq = max_seq;
  kc.kv_dim = c.n_kv_head * c.head_dim;
  kc.k.resize(size_t(c.n_layer) * max_seq * kc.kv_dim);
  kc.v.resize(kc.k.size());
  return kc;
}

void LlamaModel::embed(std::span<const int32_t> tokens, float* x) const {
  const Impl& m = *impl_;
  const int d = m.cfg.n_embd;
  const size_t es = dtype_size(m.embed.dtype);
  for (size_t t = 0; t < tokens.size(); ++t) {
    const int32_t id = tokens[t];
    if (id < 0 || id >= m.cfg.n_vocab) fail("token id {} out of range [0, {})", id, m.cfg.n_vocab);
    widen_to_f32(m.embed.dtype, m.embed.as<uint8_t>() + size_t(id) * d * es, x + t * d, size_t(d));
  }
}

void LlamaModel::block_forward(int l, float* x, int64_t n, KVCache& cache, BlockObserver* obs) const {
  impl_->block(l, x, n, cache, obs, nullptr);
}

void LlamaModel::head_forward(const float* x, int64_t n, float* logits) const {
  const Impl& m = *impl_;
  std::vector<float> xn(size_t(n * m.cfg.n_embd));
  ops::rms_norm(x, m.out_norm.data(), n, m.cfg.n_embd, m.cfg.norm_eps, xn.data());
  dense_matmul(m.head, xn.data(), n, logits);  // (n, V)
}

void LlamaModel::forward(std::span<const int32_t> tokens, KVCache& cache, float* logits,
                         int first_logit_row) const {
  const ModelConfig& c = impl_->cfg;
  const int64_t n = int64_t(tokens.size());
  if (n == 0) return;
  if (cache.n_past + n > cache.max_seq)
    fail("sequence of {} tokens exceeds the KV cache size {}", cache.n_past + n, cache.max_seq);
  if (first_logit_row < 0 || first_logit_row > n)
    fail("first_logit_row {} out of range [0, {}]", first_logit_row, n);
  std::vector<float> x(size_t(n * c.n_embd));  // (n, d)
  embed(tokens, x.data());
  for (int l = 0; l < c.n_layer; ++l) block_forward(l, x.data(), n, cache);
  cache.n_past += int(n);
  if (first_logit_row < n && logits)
    head_forward(x.data() + size_t(first_logit_row) * c.n_embd, n - first_logit_row, logits);
}

void LlamaModel::forward_branches(std::span<const int32_t> tokens, std::span<const BranchGroup> groups,
                                  KVCache& cache, std::span<const int> logit_rows, float* logits) const {
  const ModelConfig& c = impl_->cfg;
  const int64_t n = int64_t(tokens.size());
  const int p0 = cache.n_past;
  if (p0 + n > cache.max_seq)
    fail("a batch of {} tokens after {} cached exceeds the KV cache size {}", n, p0, cache.max_seq);
  BranchRows br;
  br.pos.resize(size_t(n));
  br.base.resize(size_t(n));
  br.seg.resize(size_t(n));
  br.groups.push_back(0);
  int64_t row = 0;
  auto take = [&](int len, const char* what) {
    if (len < 0 || row + len > n)
      fail("forward_branches: a {} of {} rows overruns the {} tokens", what, len, n);
  };
  for (const BranchGroup& g : groups) {
    const int64_t gb = row;
    take(g.trunk, "trunk");
    for (int r = 0; r < g.trunk; ++r, ++row) {  // causal over the cache and the trunk
      br.pos[size_t(row)] = p0 + r;
      br.base[size_t(row)] = p0;
      br.seg[size_t(row)] = 0;
    }
    for (int len : g.branches) {
      take(len, "branch");
      const int start = int(row - gb);
      for (int r = 0; r < len; ++r, ++row) {
        br.pos[size_t(row)] = p0 + g.trunk + r;
        br.base[size_t(row)] = p0 + g.trunk;
        br.seg[size_t(row)] = start;
      }
    }
    br.groups.push_back(int(row));
  }
  if (row != n) fail("forward_branches: the groups cover {} of the {} tokens", row, n);
  for (int r : logit_rows)
    if (r < 0 || r >= n) fail("forward_branches: logit row {} out of range [0, {})", r, n);
  if (n == 0) return;
  std::vector<float> x(size_t(n * c.n_embd));  // (n, d)
  embed(tokens, x.data());
  // The last layer computes outputs only for the rows the head needs (the rest only feed it keys/values).
  std::vector<int> out(logit_rows.begin(), logit_rows.end());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  for (int l = 0; l < c.n_layer; ++l)
    impl_->block(l, x.data(), n, cache, nullptr, &br, l + 1 == c.n_layer ? &out : nullptr);
  cache.n_past = p0 + groups.front().trunk;  // the first trunk stays; every other slot is free again
  if (logit_rows.empty() || !logits) return;
  std::vector<float> sel(logit_rows.size() * size_t(c.n_embd));  // (rows, d)
  for (size_t i = 0; i < logit_rows.size(); ++i)
    std::copy_n(x.data() + size_t(logit_rows[i]) * c.n_embd, c.n_embd, sel.data() + i * c.n_embd);
  head_forward(sel.data(), int64_t(logit_rows.size()), logits);
}

size_t LlamaModel::f32_weights_extra_bytes() const {
  const Impl& m = *impl_;
  size_t n = m.head.dtype == DType::F32 ? 0 : size_t(m.head.rows * m.head.cols);
  for (const LayerWeights& L : m.layers)
    for (const Linear& w : L.lin)
      if (!w.packed && w.dense.dtype != DType::F32) n += size_t(w.dense.rows * w.dense.cols);
  return n * sizeof(float);
}

void LlamaModel::keep_f32_weights() {
  Impl& m = *impl_;
  for (LayerWeights& L : m.layers)
    for (Linear& w : L.lin)
      if (!w.packed && w.dense.dtype != DType::F32) {
        const DenseWeight& d = w.dense;
        std::vector<float> v(size_t(d.rows * d.cols));
        widen_to_f32(d.dtype, d.data, v.data(), v.size());
        Linear f = owned_f32_linear(std::move(v), d.rows, d.cols);
        f.input = w.input;  // the transform and any attached adapter stay
        f.delta = w.delta;
        w = std::move(f);
      }
  if (m.head.dtype != DType::F32) {
    m.head_f32.resize(size_t(m.head.rows * m.head.cols));
    widen_to_f32(m.head.dtype, m.head.data, m.head_f32.data(), m.head_f32.size());
    m.head.dtype = DType::F32;
    m.head.data = m.head_f32.data();
  }
}

const Linear& LlamaModel::linear(int layer, LinearKind k) const {
  LOWBIT_ASSERT(layer >= 0 && layer < impl_->cfg.n_layer);
  return impl_->layers[size_t(layer)].lin[int(k)];
}

void LlamaModel::set_linear(int layer, LinearKind k, Linear w) {
  LOWBIT_ASSERT(layer >= 0 && layer < impl_->cfg.n_layer);
  Linear& cur = impl_->layers[size_t(layer)].lin[int(k)];
  if (w.rows() != cur.rows() || w.cols() != cur.cols())
    fail("set_linear: layer {} {} expects ({}, {}), got ({}, {})", layer, linear_name(k), cur.rows(),
         cur.cols(), w.rows(), w.cols());
  cur = std::move(w);
}

const std::vector<float>& LlamaModel::norm_weight(int layer, InputSite site) const {
  return const_cast<LlamaModel*>(this)->norm_weight(layer, site);
}

const std::vector<float>& LlamaModel::final_norm_weight() const {
  return impl_->out_norm;
}

const TensorView& LlamaModel::embedding() const {
  return impl_->embed;
}

const DenseWeight& LlamaModel::head_weight() const {
  return impl_->head;
}

const std::vector<float>& LlamaModel::rope_frequencies() const {
  return impl_->inv_freq;
}

std::vector<float>& LlamaModel::norm_weight(int layer, InputSite site) {
  LOWBIT_ASSERT(layer >= 0 && layer < impl_->cfg.n_layer);
  auto& L = impl_->layers[size_t(layer)];
  if (site == InputSite::AttnIn) return L.attn_norm;
  if (site == InputSite::MlpIn) return L.ffn_norm;
  fail("norm_weight: site has no preceding RMSNorm");
}

}  // namespace lowbit

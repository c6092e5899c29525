#include "train/llama_train.h"

#include <algorithm>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "train/attention.h"
#include "train/grad_ops.h"

namespace lowbit {

int64_t TrainBatch::n_targets() const {
  return int64_t(std::count_if(labels.begin(), labels.end(), [](int32_t l) { return l != kIgnoreLabel; }));
}

void TrainBatch::add(const std::vector<int32_t>& tok, const std::vector<int32_t>& lab) {
  LOWBIT_ASSERT(tok.size() == lab.size());
  if (starts.empty()) starts.push_back(0);
  tokens.insert(tokens.end(), tok.begin(), tok.end());
  labels.insert(labels.end(), lab.begin(), lab.end());
  starts.push_back(int(tokens.size()));
}

// One layer's activations, kept from its forward for its backward.
struct LlamaTrainer::Acts {
  std::vector<float> xn1;      // (n, d) attention RMSNorm output
  std::vector<float> q, k, v;  // (n, H·hd), (n, Hkv·hd) ×2, q and k post-RoPE
  std::vector<float> probs;    // attention probabilities, per segment and head (T, T)
  std::vector<float> att;      // (n, H·hd) attention output, o_proj's input
  std::vector<float> x_mid;    // (n, d) residual stream after attention
  std::vector<float> xn2;      // (n, d) MLP RMSNorm output
  std::vector<float> g, u, a;  // (n, f) gate and up pre-activations, a = silu(g)·u (down's input)
  LoraAdapter::Saved lora[7];  // each adapter's h
};

LlamaTrainer::LlamaTrainer(const LlamaModel& base, LoraSet& lora, TrainerOptions opt)
    : base_(base), lora_(lora), opt_(opt), neg_freq_(base.rope_frequencies()) {
  for (float& v : neg_freq_) v = -v;
  if (lora.n_layer() != base.config().n_layer) fail("LoRA adapters were made for another model");
  for (int l = 0; l < base.config().n_layer; ++l)
    for (LinearKind k : kAllLinears)
      if (base.linear(l, k).delta)
        fail("training: layer {} {} already has an adapter attached; train on the base model", l,
             linear_name(k));
      else if (base.linear(l, k).input)
        fail(
            "training: layer {} {} has an input transform (activation quantization or smoothing), which has "
            "no backward pass",
            l, linear_name(k));
}

namespace {

// The dropout key of one linear in one micro-batch.
uint64_t linear_key(uint64_t key, int l, LinearKind k) {
  return subkey(subkey(key, uint64_t(l)), uint64_t(k));
}

// Each row's position within its sequence.
std::vector<int> positions(const TrainBatch& b) {
  std::vector<int> pos(b.tokens.size());
  for (size_t s = 0; s + 1 < b.starts.size(); ++s)
    for (int t = b.starts[s]; t < b.starts[s + 1]; ++t) pos[size_t(t)] = t - b.starts[s];
  return pos;
}

}  // namespace

void LlamaTrainer::check(const TrainBatch& b) const {
  const int64_t n = int64_t(b.tokens.size());
  if (int64_t(b.labels.size()) != n) fail("training batch: {} labels for {} tokens", b.labels.size(), n);
  if (b.starts.empty() || b.starts.front() != 0 || b.starts.back() != n)
    fail("training batch: sequence boundaries do not cover the {} tokens", n);
  for (size_t s = 0; s + 1 < b.starts.size(); ++s)
    if (b.starts[s + 1] < b.starts[s]) fail("training batch: sequence {} has negative length", s);
  const int V = base_.config().n_vocab;
  for (int64_t t = 0; t < n; ++t) {
    if (b.tokens[size_t(t)] < 0 || b.tokens[size_t(t)] >= V)
      fail("training batch: token id {} out of range [0, {})", b.tokens[size_t(t)], V);
    const int32_t l = b.labels[size_t(t)];
    if (l != kIgnoreLabel && (l < 0 || l >= V)) fail("training batch: label {} out of range [0, {})", l, V);
  }
}

void LlamaTrainer::layer_forward(int l, float* x, int64_t n, const TrainBatch& b, const std::vector<int>& pos,
                                 Acts& a, uint64_t key, bool eval) const {
  const ModelConfig& c = base_.config();
  const int d = c.n_embd, hd = c.head_dim, H = c.n_head, kv = c.n_kv_head * hd, f = c.n_ff;
  const AttnShape shape{H, c.n_kv_head, hd};
  // y (n, rows) = W x (+ the adapter's update)
  auto lin = [&](LinearKind k, const float* in, float* y) {
    ops::linear(base_.linear(l, k), in, n, y);
    if (const LoraAdapter* ad = lora_.find(l, k))
      ad->forward(in, n, y, a.lora[int(k)], linear_key(key, l, k), !eval);
  };
  const bool interleaved = c.rope_style == RopeStyle::Interleaved;
  const float* inv_freq = base_.rope_frequencies().data();

  a.xn1.resize(size_t(n * d));
  ops::rms_norm(x, base_.norm_weight(l, InputSite::AttnIn).data(), n, d, c.norm_eps, a.xn1.data());
  a.q.resize(size_t(n * H * hd));
  a.k.resize(size_t(n * kv));
  a.v.resize(size_t(n * kv));
  lin(LinearKind::Q, a.xn1.data(), a.q.data());
  lin(LinearKind::K, a.xn1.data(), a.k.data());
  lin(LinearKind::V, a.xn1.data(), a.v.data());
  ops::rope(a.q.data(), n, H, hd, inv_freq, interleaved, 0, pos.data());
  ops::rope(a.k.data(), n, c.n_kv_head, hd, inv_freq, interleaved, 0, pos.data());
  a.probs.resize(size_t(attention_prob_offsets(b.starts, shape).back()));
  a.att.resize(size_t(n * H * hd));
  attention_forward(a.q.data(), a.k.data(), a.v.data(), b.starts, shape, a.att.data(), a.probs.data());
  a.x_mid.resize(size_t(n * d));
  lin(LinearKind::O, a.att.data(), a.x_mid.data());
  for (int64_t i = 0; i < n * d; ++i) a.x_mid[size_t(i)] += x[i];  // x + o(att), as the forward adds it

  a.xn2.resize(size_t(n * d));
  ops::rms_norm(a.x_mid.data(), base_.norm_weight(l, InputSite::MlpIn).data(), n, d, c.norm_eps,
                a.xn2.data());
  a.g.resize(size_t(n * f));
  a.u.resize(size_t(n * f));
  lin(LinearKind::Gate, a.xn2.data(), a.g.data());
  lin(LinearKind::Up, a.xn2.data(), a.u.data());
  a.a = a.g;
  silu_mul(a.a.data(), a.u.data(), a.a.size());
  std::vector<float> y(size_t(n * d));
  lin(LinearKind::Down, a.a.data(), y.data());
  for (int64_t i = 0; i < n * d; ++i) x[i] = a.x_mid[size_t(i)] + y[size_t(i)];
}

void LlamaTrainer::layer_backward(int l, const float* x_in, int64_t n, const TrainBatch& b,
                                  const std::vector<int>& pos, Acts& a, uint64_t key, float* dx) {
  const ModelConfig& c = base_.config();
  const int d = c.n_embd, hd = c.head_dim, H = c.n_head, kv = c.n_kv_head * hd, f = c.n_ff;
  const AttnShape shape{H, c.n_kv_head, hd};
  // dx_in (n, cols) (+)= dy · W, plus the adapter's gradients and its share of dx_in.
  // The first layer's input comes from the frozen embedding: nothing needs its gradient, so the base's
  // share of it (three GEMMs) is skipped; the adapters still add theirs to the scratch buffer.
  auto lin_back = [&](LinearKind k, const float* in, const float* dy, float* dxin, bool accumulate) {
    if (l > 0 || input_site(k) != InputSite::AttnIn)
      ops::linear_backward(base_.linear(l, k), dy, n, dxin, accumulate);
    else if (!accumulate)
      std::fill(dxin, dxin + n * base_.linear(l, k).cols(), 0.0f);
    if (LoraAdapter* ad = lora_.find(l, k))
      ad->backward(in, n, dy, a.lora[int(k)], linear_key(key, l, k), dxin);
    if (float* dw = weight_grad_ ? weight_grad_(l, k) : nullptr) {
      const Linear& w = base_.linear(l, k);  // dŴ (rows, cols) += dyᵀ (rows, n) · in (n, cols)
      ops::gemm_at(w.rows(), w.cols(), n, 1.0f, dy, w.rows(), in, w.cols(), 1.0f, dw, w.cols());
    }
  };
  const bool interleaved = c.rope_style == RopeStyle::Interleaved;

  // MLP: x_out = x_mid + down(silu(g)·u); dx holds d x_out and becomes d x_mid.
  std::vector<float> da(size_t(n * f)), dg(size_t(n * f)), du(size_t(n * f));
  lin_back(LinearKind::Down, a.a.data(), dx, da.data(), false);
  silu_mul_backward(a.g.data(), a.u.data(), da.data(), da.size(), dg.data(), du.data());
  std::vector<float> dxn(size_t(n * d));
  lin_back(LinearKind::Gate, a.xn2.data(), dg.data(), dxn.data(), false);
  lin_back(LinearKind::Up, a.xn2.data(), du.data(), dxn.data(), true);
  rms_norm_backward(a.x_mid.data(), base_.norm_weight(l, InputSite::MlpIn).data(), n, d, c.norm_eps,
                    dxn.data(), dx, true);

  // Attention: x_mid = x_in + o(att); dx becomes d x_in.
  std::vector<float> datt(size_t(n * H * hd));
  lin_back(LinearKind::O, a.att.data(), dx, datt.data(), false);
  std::vector<float> dq(size_t(n * H * hd)), dk(size_t(n * kv)), dv(size_t(n * kv));
  attention_backward(a.q.data(), a.k.data(), a.v.data(), a.probs.data(), b.starts, shape, datt.data(),
                     dq.data(), dk.data(), dv.data());
  ops::rope(dq.data(), n, H, hd, neg_freq_.data(), interleaved, 0, pos.data());
  ops::rope(dk.data(), n, c.n_kv_head, hd, neg_freq_.data(), interleaved, 0, pos.data());
  lin_back(LinearKind::Q, a.xn1.data(), dq.data(), dxn.data(), false);
  lin_back(LinearKind::K, a.xn1.data(), dk.data(), dxn.data(), true);
  lin_back(LinearKind::V, a.xn1.data(), dv.data(), dxn.data(), true);
  if (l > 0)
    rms_norm_backward(x_in, base_.norm_weight(l, InputSite::AttnIn).data(), n, d, c.norm_eps, dxn.data(), dx,
                      true);
}

LossSum LlamaTrainer::head(const float* x, const TrainBatch& b, float loss_scale, float* dx,
                           Distill* distill) const {
  const ModelConfig& c = base_.config();
  const int d = c.n_embd, V = c.n_vocab;
  Linear head;
  head.dense = base_.head_weight();
  const float* norm = base_.final_norm_weight().data();
  std::vector<int64_t> rows;  // the labelled rows: the only ones whose logits are needed
  for (size_t t = 0; t < b.labels.size(); ++t)
    if (b.labels[t] != kIgnoreLabel) rows.push_back(int64_t(t));
  LossSum out;
  out.n_targets = int64_t(rows.size());
  const int64_t chunk = std::max<int64_t>(1, opt_.head_chunk);
  std::vector<float> xr, xn, logits, dxn, dxr, teacher;
  std::vector<int32_t> lab;
  for (size_t r0 = 0; r0 < rows.size(); r0 += size_t(chunk)) {
    const int64_t m = std::min<int64_t>(chunk, int64_t(rows.size() - r0));
    xr.resize(size_t(m * d));
    lab.resize(size_t(m));
    for (int64_t i = 0; i < m; ++i) {
      std::copy_n(x + rows[r0 + size_t(i)] * d, d, xr.data() + i * d);
      lab[size_t(i)] = b.labels[size_t(rows[r0 + size_t(i)])];
    }
    xn.resize(size_t(m * d));
    ops::rms_norm(xr.data(), norm, m, d, c.norm_eps, xn.data());
    logits.resize(size_t(m * V));
    ops::linear(head, xn.data(), m, logits.data());  // (m, V)
    if (distill) {  // the teacher's logits of the same rows, through the same norm and head
      for (int64_t i = 0; i < m; ++i)
        std::copy_n(distill->teacher_hidden + rows[r0 + size_t(i)] * d, d, xr.data() + i * d);
      ops::rms_norm(xr.data(), norm, m, d, c.norm_eps, xn.data());
      teacher.resize(size_t(m * V));
      ops::linear(head, xn.data(), m, teacher.data());
      for (int64_t i = 0; i < m; ++i) std::copy_n(x + rows[r0 + size_t(i)] * d, d, xr.data() + i * d);
      const DadSums s = dad_loss_backward(logits.data(), teacher.data(), m, V, distill->gamma, loss_scale);
      distill->sums.loss += s.loss;
      distill->sums.ce += s.ce;
      distill->sums.kl += s.kl;
      distill->sums.weight += s.weight;
      out.sum += s.loss;
    } else if (!dx) {
      out.sum += cross_entropy(logits.data(), lab.data(), m, V);
      continue;
    } else {
      out.sum += cross_entropy_backward(logits.data(), lab.data(), m, V, loss_scale);
    }
    dxn.resize(size_t(m * d));
    ops::linear_backward(head, logits.data(), m, dxn.data(), false);  // (m, d) = dlogits · W_head
    dxr.resize(size_t(m * d));
    rms_norm_backward(xr.data(), norm, m, d, c.norm_eps, dxn.data(), dxr.data(), false);
    for (int64_t i = 0; i < m; ++i) std::copy_n(dxr.data() + i * d, d, dx + rows[r0 + size_t(i)] * d);
  }
  return out;
}

LossSum LlamaTrainer::loss(const TrainBatch& b) const {
  check(b);
  const int64_t n = int64_t(b.tokens.size()), d = base_.config().n_embd;
  std::vector<float> x(size_t(n * d));
  base_.embed(b.tokens, x.data());
  const std::vector<int> pos = positions(b);
  Acts a;
  for (int l = 0; l < base_.config().n_layer; ++l) layer_forward(l, x.data(), n, b, pos, a, 0, true);
  return head(x.data(), b, 0.0f, nullptr, nullptr);
}

void LlamaTrainer::hidden(const TrainBatch& b, float* out) const {
  check(b);
  const int64_t n = int64_t(b.tokens.size());
  base_.embed(b.tokens, out);
  const std::vector<int> pos = positions(b);
  Acts a;
  for (int l = 0; l < base_.config().n_layer; ++l) layer_forward(l, out, n, b, pos, a, 0, true);
}

LossSum LlamaTrainer::forward_backward(const TrainBatch& b, float loss_scale, uint64_t key) {
  return run(b, loss_scale, key, nullptr);
}

LossSum LlamaTrainer::forward_backward(const TrainBatch& b, float loss_scale, uint64_t key,
                                       Distill& distill) {
  if (!distill.teacher_hidden) fail("distillation: no teacher states");
  distill.sums = {};
  return run(b, loss_scale, key, &distill);
}

LossSum LlamaTrainer::run(const TrainBatch& b, float loss_scale, uint64_t key, Distill* distill) {
  check(b);
  const int L = base_.config().n_layer;
  const int64_t n = int64_t(b.tokens.size()), d = base_.config().n_embd;
  const std::vector<int> pos = positions(b);
  // xs[l] (n, d): layer l's input; xs[L] the last layer's output.
  std::vector<std::vector<float>> xs(size_t(L + 1), std::vector<float>(size_t(n * d)));
  base_.embed(b.tokens, xs[0].data());
  std::vector<Acts> kept(opt_.recompute ? 1 : size_t(L));
  for (int l = 0; l < L; ++l) {
    xs[size_t(l + 1)] = xs[size_t(l)];
    layer_forward(l, xs[size_t(l + 1)].data(), n, b, pos, kept[opt_.recompute ? 0 : size_t(l)], key, false);
  }
  std::vector<float> dx(size_t(n * d), 0.0f);  // d loss / d (layer output), rows without a target stay 0
  const LossSum out = head(xs[size_t(L)].data(), b, loss_scale, dx.data(), distill);
  for (int l = L - 1; l >= 0; --l) {
    Acts& a = kept[opt_.recompute ? 0 : size_t(l)];
    if (opt_.recompute) {  // this layer's activations again, from its kept input
      std::vector<float> x = xs[size_t(l)];
      layer_forward(l, x.data(), n, b, pos, a, key, false);
    }
    layer_backward(l, xs[size_t(l)].data(), n, b, pos, a, key, dx.data());
  }
  return out;
}

}  // namespace lowbit

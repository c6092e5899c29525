// Grouped-query causal self-attention over a packed batch, forward (keeping the probabilities) and backward.
// Sequences are laid end to end: segment s is rows [starts[s], starts[s+1]), and each row attends to the
// rows of its own segment up to itself. Query head h reads key/value head h / (H / Hkv).
//
// Shapes: n = rows of the batch, H / Hkv = query / key-value heads, hd = head_dim, T_s = a segment's length.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace lowbit {

struct AttnShape {
  int n_head = 0, n_kv_head = 0, head_dim = 0;
};

// Where each segment's probabilities start in the saved buffer (H · T_s² floats per segment).
std::vector<int64_t> attention_prob_offsets(std::span<const int> starts, const AttnShape& a);

// out (n, H·hd) = softmax(q kᵀ / sqrt(hd) + causal mask) v per segment and head, from q (n, H·hd) and k, v
// (n, Hkv·hd), post-RoPE. probs (attention_prob_offsets().back() floats) receives each (segment, head)'s
// (T, T) probabilities, zero above the diagonal.
void attention_forward(const float* q, const float* k, const float* v, std::span<const int> starts,
                       const AttnShape& a, float* out, float* probs);

// The backward of attention_forward given dout (n, H·hd) and its saved probs: dq (n, H·hd), dk and dv
// (n, Hkv·hd) are written (each key/value head sums its query heads' contributions, in head order).
// With S = q kᵀ/√hd and P = softmax(S): dP = dO vᵀ, dS = P ∘ (dP − rowsum(dP ∘ P)), dq = dS k/√hd,
// dk = dSᵀ q/√hd, dv = Pᵀ dO.
void attention_backward(const float* q, const float* k, const float* v, const float* probs,
                        std::span<const int> starts, const AttnShape& a, const float* dout, float* dq,
                        float* dk, float* dv);

}  // namespace lowbit

// llama2.c's legacy checkpoint (Karpathy, llama2.c export.py "legacy_export" / run.c): a header of 7 int32
// (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means the
// classifier is not shared with the embedding and is stored last), then fp32 tensors, each layer-stacked:
//   token_embedding (vocab, dim), rms_att (L, dim), wq (L, dim, dim), wk (L, kv_dim, dim), wv (L, kv_dim, dim),
//   wo (L, dim, dim), rms_ffn (L, dim), w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden, dim),
//   rms_final (dim), freq_cis_real (seq_len, head_size/2), freq_cis_imag (same), [wcls (vocab, dim)]
// with kv_dim = dim * n_kv_heads / n_heads. w1 is the gate projection, w3 the up projection, w2 the down one.
#pragma once
#include <string>

#include "io/checkpoint.h"

namespace lowbit {

// Views into the mmap under canonical names. Config: RoPE theta 10000, RMSNorm eps 1e-5, RopeStyle::Interleaved
// (llama2.c rotates adjacent pairs), bos 1, eos 2. The file size must be exactly what the header implies.
Checkpoint load_llama2c_checkpoint(const std::string& path);

}  // namespace lowbit

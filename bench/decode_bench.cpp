// End-to-end decode benchmark at batch 1: tokens/s of greedy decoding, and the fraction of the
// memory-bandwidth bound (bytes of weights read per token ÷ measured copy bandwidth). Use a synthetic
// checkpoint from `lowbit synth --shape llama3.2-1b --dtype bf16 --out DIR`.
#include <fmt/format.h>

#include "bench_util.h"
#include "core/paths.h"
#include "core/progress.h"
#include "model/llama.h"
#include "model/sampler.h"

using namespace lowbit;

int main(int argc, char** argv) {
  try {
    if (argc < 2) {
      fmt::print(stderr, "usage: decode_bench MODEL [tokens=64] [prompt_tokens=16]\n");
      return 2;
    }
    const int n = argc > 2 ? std::atoi(argv[2]) : 64;
    const int n_prompt = argc > 3 ? std::atoi(argv[3]) : 16;
    set_num_threads(0);
    const std::string path = resolve_model_path(argv[1], find_search_paths());
    LlamaModel model(load_checkpoint(path));
    const auto& c = model.config();
    // Bytes a decode step must read: every linear weight and the head, plus one embedding row.
    uint64_t bytes = 0;
    for (auto& [name, t] : model.checkpoint().tensors)
      if (name != "model.embed_tokens.weight" && t.shape.size() == 2) bytes += t.nbytes;
    const TensorView& emb = model.checkpoint().get("model.embed_tokens.weight");
    if (c.tie_word_embeddings && !model.checkpoint().has("lm_head.weight")) bytes += emb.nbytes;
    bytes += emb.nbytes / uint64_t(c.n_vocab);

    std::vector<int32_t> ids(size_t(n_prompt), 1);
    KVCache cache = model.new_cache(n_prompt + n);
    std::vector<float> logits(size_t(c.n_vocab));
    model.forward(ids, cache, logits.data(), n_prompt - 1);
    Timer t;
    for (int i = 0; i < n; ++i) {
      int32_t one[1] = {argmax(logits.data(), c.n_vocab)};
      model.forward(one, cache, logits.data());
    }
    const double s = t.seconds();
    const double tps = n / s;
    const uint64_t rss = peak_rss_bytes();  // before the bandwidth probe allocates its 2 GiB
    // Bandwidth in the STREAM "copy" convention: bytes read + bytes written per second.
    const double bw = bench::copy_bandwidth_gbs();
    const double bound = bw * 1e9 / double(bytes);
    fmt::print("model {}  threads {}  OpenBLAS {}  weights read per token {}\n", path, num_threads(),
               blas_kernels_description(), format_bytes(bytes));
    fmt::print("decode {:.2f} tokens/s ({} tokens, {:.2f} s)\n", tps, n, s);
    fmt::print(
        "copy bandwidth {:.1f} GB/s (read+write) -> bound {:.2f} tokens/s; achieved {:.0f}% of bound\n", bw,
        bound, 100 * tps / bound);
    fmt::print("peak RSS {}\n", format_bytes(rss));
  } catch (const std::exception& e) {
    fmt::print(stderr, "decode_bench: error: {}\n", e.what());
    return 1;
  }
}

// End-to-end benchmark: full perplexity of one evaluation text (default: wikitext2 on testbed-25m).
// Prints wall time, prefill tokens/s, achieved GFLOP/s and its fraction of OpenBLAS sgemm measured in this
// run, and peak RSS.
#include <fmt/format.h>

#include "bench_util.h"
#include "core/paths.h"
#include "core/progress.h"
#include "eval/perplexity.h"
#include "eval/ppl_texts.h"
#include "io/tokenizer.h"

using namespace lowbit;

int main(int argc, char** argv) {
  try {
    const std::string model_arg = argc > 1 ? argv[1] : "testbed-25m";
    const std::string dataset = argc > 2 ? argv[2] : "wikitext2";
    const int seqlen = argc > 3 ? std::atoi(argv[3]) : 2048;
    set_num_threads(0);
    SearchPaths sp = find_search_paths();
    const std::string path = resolve_model_path(model_arg, sp);
    Timer wall;
    LlamaModel model(load_checkpoint(path));
    auto tok = load_tokenizer_for_model(path);
    auto ids = tok->encode_with_bos(build_eval_text(dataset, sp).text);
    const double setup_s = wall.seconds();
    PplOptions opt;
    opt.seqlen = seqlen;
    PplResult r = perplexity(model, ids, opt);
    const double total_s = wall.seconds();

    // FLOPs per window: 2·L per linear weight (all layers + head) + causal attention 2·2·hd·H·L(L+1)/2 per
    // layer.
    const auto& c = model.config();
    const double L = seqlen;
    const double lin =
        double(c.n_layer) * (double(c.n_embd) * c.n_head * c.head_dim * 2 +
                             double(c.n_embd) * c.n_kv_head * c.head_dim * 2 + 3.0 * c.n_embd * c.n_ff) +
        double(c.n_vocab) * c.n_embd;
    const double attn = double(c.n_layer) * 2.0 * 2.0 * c.head_dim * c.n_head * L * (L + 1) / 2;
    const double flops = r.windows * (2 * L * lin + attn);
    const double gflops = flops / r.seconds / 1e9;
    const double peak = bench::sgemm_peak_gflops(seqlen, c.n_ff, c.n_embd);
    fmt::print("model {}  dataset {}  threads {}  OpenBLAS {}\n", path, dataset, num_threads(),
               blas_kernels_description());
    fmt::print("ppl {:.4f}  windows {} x {}\n", r.ppl, r.windows, seqlen);
    fmt::print("wall {:.2f} s (load+tokenize {:.2f} s, forward {:.2f} s)\n", total_s, setup_s, r.seconds);
    fmt::print("prefill {:.0f} tokens/s\n", r.windows * L / r.seconds);
    fmt::print("achieved {:.1f} GFLOP/s; OpenBLAS sgemm {:.1f} GFLOP/s in this run -> {:.0f}%\n", gflops,
               peak, 100 * gflops / peak);
    fmt::print("peak RSS {}\n", format_bytes(peak_rss_bytes()));
  } catch (const std::exception& e) {
    fmt::print(stderr, "ppl_bench: error: {}\n", e.what());
    return 1;
  }
}

// End-to-end quantization benchmark (issue 3): wall time of quantize_model, the GPTQ Hessian accumulation's
// GFLOP/s against this machine's OpenBLAS sgemm peak, and peak RSS against the memory target "one layer's
// fp32 weights + the calibration activations, + 25%". Use the test bed or a synthetic checkpoint from `lowbit
// synth --shape llama3.2-1b --dtype bf16 --out DIR`.
//
//   quantize_bench MODEL [method=gptq] [nsamples=128] [seqlen=2048] [wbits=4] [group=128]
#include <fmt/format.h>

#include "bench_util.h"
#include "core/paths.h"
#include "core/progress.h"
#include "io/tokenizer.h"
#include "model/llama.h"
#include "quant/quantize.h"

using namespace lowbit;

int main(int argc, char** argv) {
  try {
    if (argc < 2) {
      fmt::print(stderr,
                 "usage: quantize_bench MODEL [method=gptq] [nsamples=128] [seqlen=2048] [wbits=4] "
                 "[group=128]\n");
      return 2;
    }
    auto arg = [&](int i, const char* def) { return std::string(argc > i ? argv[i] : def); };
    set_num_threads(0);
    const SearchPaths paths = find_search_paths();
    const std::string path = resolve_model_path(argv[1], paths);
    QuantConfig q;
    q.method = arg(2, "gptq");
    q.nsamples = std::stoi(arg(3, "128"));
    q.seqlen = std::stoi(arg(4, "2048"));
    q.wbits = std::stoi(arg(5, "4"));
    q.group = std::stoi(arg(6, "128"));
    q.calib_file = resolve_data_path("calib/testbed-calib.txt", paths);

    LlamaModel model(load_checkpoint(path));
    auto tok = load_tokenizer_for_model(path);
    const ModelConfig& c = model.config();
    const uint64_t rss_loaded = peak_rss_bytes();
    // The target: the largest block's linears in fp32, the calibration activations (nsamples, seqlen, n_embd)
    // in fp32, and 25% on top.
    uint64_t layer_bytes = 0;
    for (int l = 0; l < c.n_layer; ++l) {
      uint64_t b = 0;
      for (LinearKind k : kAllLinears)
        b += uint64_t(model.linear(l, k).rows() * model.linear(l, k).cols()) * 4;
      layer_bytes = std::max(layer_bytes, b);
    }
    const uint64_t act_bytes = method_needs_calibration(q.method)
                                   ? uint64_t(q.nsamples) * uint64_t(q.seqlen) * uint64_t(c.n_embd) * 4
                                   : 0;
    const uint64_t target = (layer_bytes + act_bytes) * 5 / 4;

    const QuantReport r = quantize_model(model, *tok, q);
    const uint64_t rss = peak_rss_bytes();
    const double peak = bench::sgemm_peak_gflops(2048, 2048, 2048);
    fmt::print("model {}  threads {}  OpenBLAS {}  {} w{} g{}  calibration {} x {}\n", path, num_threads(),
               blas_kernels_description(), q.method, q.wbits, q.group, q.nsamples, q.seqlen);
    fmt::print("wall {:.1f} s ({:.2f} s per layer)\n", r.seconds, r.seconds / c.n_layer);
    if (r.hessian_flops > 0) {
      const double g = r.hessian_flops / 1e9 / r.hessian_seconds;
      fmt::print(
          "Hessian accumulation {:.1f} GFLOP in {:.1f} s: {:.1f} GFLOP/s = {:.0f}% of sgemm peak {:.1f} "
          "GFLOP/s\n",
          r.hessian_flops / 1e9, r.hessian_seconds, g, 100 * g / peak, peak);
    }
    fmt::print("peak RSS {} (after loading {}); target {} = 1.25 x (layer fp32 {} + activations {}): {}\n",
               format_bytes(rss), format_bytes(rss_loaded), format_bytes(target), format_bytes(layer_bytes),
               format_bytes(act_bytes), rss <= target ? "met" : "NOT met");
    fmt::print("{:.3f} bits per quantized weight\n", r.bits_per_weight);
  } catch (const std::exception& e) {
    fmt::print(stderr, "quantize_bench: error: {}\n", e.what());
    return 1;
  }
}

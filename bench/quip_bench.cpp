// QuIP at inference (issue 25): decode tokens/s at batch 1 of a 2-bit QuIP model against lowbit's w2g128,
// w4g128 and bf16 on the same checkpoint, the share of the QuIP product spent in the rotations, and the bytes
// of weights each reads per token. Use the synthetic LLaMA-3.2-1B (`lowbit synth --shape llama3.2-1b --dtype
// bf16 --out DIR`).
//
// The QuIP model's codes are random (uniform in [0, 3]) with the rotations a real one would have (seeded,
// both kinds): decoding reads and multiplies the same bytes whatever the codes are, and quantizing a 1B model
// with QuIP's double-precision LDLQ takes about an hour on 2 cores. The RTN models are quantized for real.
//
//   quip_bench MODEL [tokens=64]
#include <fmt/format.h>

#include <algorithm>
#include <random>

#include "core/paths.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/sys.h"
#include "io/tokenizer.h"
#include "kernels/affine_matmul.h"
#include "kernels/quip_matmul.h"
#include "model/llama.h"
#include "model/sampler.h"
#include "quant/quantize.h"

using namespace lowbit;

namespace {

std::shared_ptr<QuipWeight> random_quip(int64_t rows, int64_t cols, RotationKind kind, uint64_t seed) {
  std::mt19937 rng{uint32_t(seed)};
  std::uniform_int_distribution<int> code(0, 3);
  std::vector<uint8_t> q(size_t(rows * cols));
  for (uint8_t& c : q) c = uint8_t(code(rng));
  std::vector<float> d(size_t(cols), 1.0f);
  return make_quip(2, rows, cols, q.data(), 0.02f, d.data(),
                   make_rotation(kind, rows, subkey(seed, 1), "bench"),
                   make_rotation(kind, cols, subkey(seed, 2), "bench"));
}

// Tokens/s of greedy decoding of n tokens after a 16-token prompt.
double decode_tps(LlamaModel& model, int n) {
  const auto& c = model.config();
  std::vector<int32_t> ids(16, 1);
  KVCache cache = model.new_cache(16 + n);
  std::vector<float> logits(size_t(c.n_vocab));
  model.forward(ids, cache, logits.data(), 15);
  Timer t;
  for (int i = 0; i < n; ++i) {
    int32_t one[1] = {argmax(logits.data(), c.n_vocab)};
    model.forward(one, cache, logits.data());
  }
  return n / t.seconds();
}

uint64_t linear_bytes(const LlamaModel& model) {
  uint64_t b = 0;
  for (int l = 0; l < model.config().n_layer; ++l)
    for (LinearKind k : kAllLinears) {
      const Linear& lin = model.linear(l, k);
      b += lin.packed ? uint64_t(lin.packed->format().bits_per_weight(*lin.packed) * double(lin.rows()) *
                                 double(lin.cols()) / 8)
                      : uint64_t(lin.rows() * lin.cols()) * dtype_size(lin.dense.dtype);
    }
  return b;
}

// Median seconds of f over reps runs.
template <class F>
double median_seconds(int reps, F&& f) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    Timer tm;
    f();
    t.push_back(tm.seconds());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) {
      fmt::print(stderr, "usage: quip_bench MODEL [tokens=64]\n");
      return 2;
    }
    const int n = argc > 2 ? std::atoi(argv[2]) : 64;
    set_num_threads(0);
    const std::string path = resolve_model_path(argv[1], find_search_paths());
    fmt::print("model {}  threads {}  {} tokens after a 16-token prompt\n", path, num_threads(), n);
    fmt::print("| weights | linear bytes per token | decode tokens/s |\n|---|--:|--:|\n");
    {
      LlamaModel m(load_checkpoint(path));
      fmt::print("| bf16 | {} | {:.2f} |\n", format_bytes(linear_bytes(m)), decode_tps(m, n));
    }
    auto tok = load_tokenizer_for_model(path);
    for (int bits : {4, 2}) {
      LlamaModel m(load_checkpoint(path));
      QuantConfig qc;
      qc.method = "rtn";
      qc.wbits = bits;
      qc.group = 128;
      qc.quiet = true;
      quantize_model(m, *tok, qc);
      fmt::print("| rtn w{}g128 | {} | {:.2f} |\n", bits, format_bytes(linear_bytes(m)), decode_tps(m, n));
    }
    for (RotationKind kind : {RotationKind::Kronecker, RotationKind::Hadamard}) {
      LlamaModel m(load_checkpoint(path));
      for (int l = 0; l < m.config().n_layer; ++l)
        for (LinearKind k : kAllLinears) {
          const Linear& lin = m.linear(l, k);
          install_linear(m, l, k, random_quip(lin.rows(), lin.cols(), kind, uint64_t(l * 16 + int(k))));
        }
      fmt::print("| quip w2 {} | {} | {:.2f} |\n", rotation_kind_name(kind), format_bytes(linear_bytes(m)),
                 decode_tps(m, n));
    }
    // The rotations' share of one QuIP GEMV, per linear shape of the 1B model: the whole product against
    // its middle step alone (the affine kernel on the centred codes).
    LlamaModel m(load_checkpoint(path));
    fmt::print(
        "\n| linear (rows × cols) | rotation | quip GEMV µs | affine middle µs | rotations' share |\n"
        "|---|---|--:|--:|--:|\n");
    for (LinearKind k : {LinearKind::Q, LinearKind::K, LinearKind::O, LinearKind::Gate, LinearKind::Down})
      for (RotationKind kind : {RotationKind::Kronecker, RotationKind::Hadamard}) {
        const Linear& lin = m.linear(0, k);
        auto w = random_quip(lin.rows(), lin.cols(), kind, 7);
        std::vector<float> x(size_t(lin.cols()), 0.5f), y(size_t(lin.rows()));
        const double whole = median_seconds(200, [&] { quip_matmul(*w, x.data(), 1, y.data()); });
        const double mid = median_seconds(200, [&] { affine_matmul(w->centred, x.data(), 1, y.data()); });
        fmt::print("| {} ({} × {}) | {} | {:.1f} | {:.1f} | {:.0f}% |\n", linear_name(k), lin.rows(),
                   lin.cols(), rotation_kind_name(kind), whole * 1e6, mid * 1e6, 100 * (whole - mid) / whole);
      }
    fmt::print("peak RSS {}\n", format_bytes(peak_rss_bytes()));
  } catch (const std::exception& e) {
    fmt::print(stderr, "quip_bench: error: {}\n", e.what());
    return 1;
  }
}

// lowbit synth --shape NAME --out DIR: a random-weight checkpoint of a real model's shape (model/synth.h).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/commands.h"
#include "core/error.h"
#include "model/synth.h"

namespace lowbit::cli {

void add_synth(CLI::App& app, Global&, Commands& out) {
  auto* sub =
      app.add_subcommand("synth", "Write a random-weight HF checkpoint of a LLaMA shape (for benchmarks)");
  struct Opts {
    std::string dtype = "bf16", out;
    SynthOptions s;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("--shape", o->s.shape, fmt::format("One of: {}", fmt::join(synth_shapes(), ", ")));
  sub->add_option("--dtype", o->dtype, "bf16, f16 or f32");
  sub->add_option("--layers", o->s.layers, "Override the number of layers (0 = the shape's)")
      ->check(at_least(0));
  sub->add_option("--seed", o->s.seed, "Random seed");
  sub->add_option("--out", o->out, "Output directory")->required();
  out.emplace_back(sub, [o]() {
    SynthOptions s = o->s;
    if (o->dtype == "bf16")
      s.dtype = DType::BF16;
    else if (o->dtype == "f16")
      s.dtype = DType::F16;
    else if (o->dtype == "f32")
      s.dtype = DType::F32;
    else
      fail("--dtype {}: expected bf16, f16 or f32", o->dtype);
    const size_t n = synth_checkpoint(s, o->out);
    fmt::print("wrote {} ({} tensors, shape {}, {})\n", o->out, n, s.shape, o->dtype);
    return 0;
  });
}

}  // namespace lowbit::cli

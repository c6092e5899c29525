// lowbit quantize MODEL --method rtn|gptq|awq --wbits B --group G --out DIR: quantize every block linear into
// the packed format and write a checkpoint lowbit loads back.
#include <fmt/format.h>

#include <algorithm>

#include "cli/common.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "model/save.h"
#include "quant/quantize.h"

namespace lowbit::cli {

void add_quantize(CLI::App& app, Global& g, Commands& out) {
  auto* sub =
      app.add_subcommand("quantize", "Quantize a model's weights (RTN, GPTQ, AWQ) into a packed checkpoint");
  struct Opts {
    std::string model, out;
    QuantConfig q;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("model", o->model, "Model (HF directory or a name under the models dir)")->required();
  sub->add_option("--method", o->q.method, "rtn, gptq or awq")->required();
  sub->add_option("--wbits", o->q.wbits, "Weight bits (2..8)")->required();
  sub->add_option("--group", o->q.group, "Input columns per scale/zero group; -1 = per output channel");
  sub->add_flag("--sym", o->q.sym, "Symmetric quantization (default asymmetric)");
  sub->add_flag("--act-order", o->q.act_order, "GPTQ: quantize columns by decreasing Hessian diagonal");
  sub->add_flag("--static-groups", o->q.static_groups, "GPTQ: groups fixed before act-order");
  sub->add_flag("--true-sequential", o->q.true_sequential, "GPTQ: q/k/v, then o, then gate/up, then down");
  sub->add_flag("--mse", o->q.mse, "MSE shrink search for the quantization range");
  sub->add_option("--damp", o->q.damp, "GPTQ relative dampening");
  sub->add_option("--calib", o->q.calib_file,
                  "Calibration text file (path, or relative to the data dir, e.g. calib/testbed-calib.txt)");
  sub->add_option("--nsamples", o->q.nsamples, "Calibration windows");
  sub->add_option("--seqlen", o->q.seqlen, "Calibration window length in tokens");
  sub->add_option("--seed", o->q.seed, "Seed for the calibration windows");
  sub->add_option(
      "--calib-acts", o->q.calib_acts,
      "Where the calibration activations live: f32 (RAM), bf16 (RAM, half; rounds them), disk (f32 "
      "in a temporary file, same results as f32)");
  sub->add_option(
      "--spill-dir", o->q.spill_dir,
      "Directory for scratch files: finished layers, --calib-acts disk (default $TMPDIR or /tmp)");
  sub->add_option("--out", o->out, "Output directory")->required();
  sub->add_flag("--json", o->json, "Print the summary as JSON");
  out.emplace_back(sub, [&g, o]() {
    LoadedModel lm = load_model(g, o->model);
    QuantConfig q = o->q;
    if (q.group == 0) q.group = -1;
    if (!q.calib_file.empty()) q.calib_file = resolve_data_path(q.calib_file, g.paths());
    QuantReport rep = quantize_model(*lm.model, *lm.tokenizer, q);
    const Json qc = quantization_config_json(q, rep, lm.path);
    const uint64_t bytes = save_model(*lm.model, o->out, qc);
    Json summary = {{"out", o->out},
                    {"seconds", rep.seconds},
                    {"peak_rss_bytes", peak_rss_bytes()},
                    {"output_bytes", bytes},
                    {"quantized_weights", rep.n_weights},
                    {"bits_per_weight", rep.bits_per_weight},
                    {"quantization_config", qc}};
    if (rep.hessian_flops > 0) {
      summary["hessian_seconds"] = rep.hessian_seconds;
      summary["hessian_gflops"] = rep.hessian_flops / 1e9;
    }
    if (o->json) {
      fmt::print("{}\n", summary.dump(2));
    } else {
      fmt::print("quantized {} -> {}  ({} w{} g{}{})\n", lm.path, o->out, q.method, q.wbits, q.group,
                 q.act_order ? " act-order" : "");
      fmt::print("  {:.1f} s, peak RSS {}, model.safetensors {}, {:.3f} bits per quantized weight\n",
                 rep.seconds, format_bytes(peak_rss_bytes()), format_bytes(bytes), rep.bits_per_weight);
      if (rep.hessian_flops > 0)
        fmt::print("  Hessian accumulation: {:.1f} GFLOP in {:.1f} s ({:.1f} GFLOP/s)\n",
                   rep.hessian_flops / 1e9, rep.hessian_seconds,
                   rep.hessian_flops / 1e9 / std::max(rep.hessian_seconds, 1e-9));
    }
    return 0;
  });
}

}  // namespace lowbit::cli

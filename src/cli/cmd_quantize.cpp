// lowbit quantize MODEL --method M --wbits B --group G --out DIR: quantize every block linear with a
// registered method (quant/method.h) and write a checkpoint lowbit loads back. The method flags come from the
// registry.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "cli/common.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "model/save.h"
#include "quant/quantize.h"

namespace lowbit::cli {

namespace {

// --method's help: every registered method with its summary.
std::string methods_help() {
  std::string h = "Quantization method:";
  for (const Method* m : quant_method_list())
    h += fmt::format("\n  {}: {}{}", m->name, m->summary, m->needs_calibration ? " (needs --calib)" : "");
  return h;
}

}  // namespace

void add_quantize(CLI::App& app, Global& g, Commands& out) {
  auto* sub = app.add_subcommand("quantize", "Quantize a model's weights into a packed checkpoint");
  struct Opts {
    std::string model, out;
    QuantConfig q;
    bool json = false;
    // Method options as typed (the registry's schema converts and checks them), by option name.
    std::map<std::string, std::string> values;
    std::map<std::string, bool> flags;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("model", o->model, "Model (HF directory or a name under the models dir)")->required();
  sub->add_option("--method", o->q.method, methods_help())->required();
  sub->add_option("--wbits", o->q.wbits, "Weight bits (2..8 for the affine methods)")->required();
  CLI::Option* group_opt = sub->add_option("--group", o->q.group,
                                           "Input columns per scale/zero group; -1 = per output channel "
                                           "(default 128, or the method's fixed block)");
  // One flag per method option, from the registry; the help names the methods that take it.
  std::vector<std::pair<const MethodOption*, CLI::Option*>> method_opts;
  for (const OptionUse& u : all_method_options()) {
    const MethodOption& mo = *u.option;
    std::string help = fmt::format("{}: {}", fmt::join(u.methods, ", "), mo.help);
    CLI::Option* opt;
    if (mo.type == OptionType::Bool) {
      opt = sub->add_flag(mo.flag(), o->flags[mo.name], help);
    } else {
      help += fmt::format(" (default {})", mo.def.is_string() ? mo.def.get<std::string>() : mo.def.dump());
      opt = sub->add_option(mo.flag(), o->values[mo.name], help);
      opt->type_name(mo.type == OptionType::Int ? "INT" : mo.type == OptionType::Number ? "FLOAT" : "TEXT");
    }
    method_opts.emplace_back(&mo, opt);
  }
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
  CLI::Option* work_opt = sub->add_option(
      "--work-dir", o->q.work_dir,
      "Trained methods (db-llm): where training state is checkpointed and resumed from (default OUT.work, "
      "removed after success)");
  sub->add_option("--out", o->out, "Output directory")->required();
  sub->add_flag("--json", o->json, "Print the summary as JSON");
  out.emplace_back(sub, [&g, o, method_opts, group_opt, work_opt]() {
    QuantConfig q = o->q;
    const Method* method = find_method(q.method);
    const bool default_work = method && method->quantize_model && work_opt->count() == 0;
    if (default_work) q.work_dir = o->out + ".work";
    // A method with a fixed block (nf4) takes it when --group is left out.
    if (method && method->fixed_group != 0 && group_opt->count() == 0) q.group = method->fixed_group;
    for (const auto& [mo, opt] : method_opts) {
      if (opt->count() == 0) continue;
      if (mo->type == OptionType::Bool) {
        q.options[mo->name] = o->flags[mo->name];
        continue;
      }
      const std::string& v = o->values[mo->name];
      if (mo->type == OptionType::String) {
        q.options[mo->name] = v;
        continue;
      }
      int64_t i = 0;
      double d = 0;
      const bool is_int = mo->type == OptionType::Int;
      if (is_int ? !CLI::detail::lexical_cast(v, i) : !CLI::detail::lexical_cast(v, d))
        fail("{} '{}': expected {}", mo->flag(), v, is_int ? "an integer" : "a number");
      q.options[mo->name] = is_int ? Json(i) : Json(d);
    }
    validate_quant_options(q);
    LoadedModel lm = load_model(g, o->model);
    if (!q.calib_file.empty()) q.calib_file = resolve_data_path(q.calib_file, g.paths());
    QuantReport rep = quantize_model(*lm.model, *lm.tokenizer, q);
    const Json qc = quantization_config_json(q, rep, lm.path);
    const uint64_t bytes = save_model(*lm.model, o->out, qc);
    if (default_work) std::filesystem::remove_all(q.work_dir);  // the checkpoint is complete
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
      std::string opts;
      for (auto& [k, v] : q.options.items()) opts += " " + k + "=" + v.dump();
      fmt::print("quantized {} -> {}  ({} w{} g{}{})\n", lm.path, o->out, q.method, q.wbits, q.group, opts);
      fmt::print("  {:.1f} s, peak RSS {}, model.safetensors {}, {:.3f} bits per quantized weight{}\n",
                 rep.seconds, format_bytes(peak_rss_bytes()), format_bytes(bytes), rep.bits_per_weight,
                 rep.paper_bits != double(q.wbits)
                     ? fmt::format(" stored ({:.3f} as the method's paper counts)", rep.paper_bits)
                     : std::string());
      if (rep.hessian_flops > 0)
        fmt::print("  Hessian accumulation: {:.1f} GFLOP in {:.1f} s ({:.1f} GFLOP/s)\n",
                   rep.hessian_flops / 1e9, rep.hessian_seconds,
                   rep.hessian_flops / 1e9 / std::max(rep.hessian_seconds, 1e-9));
    }
    return 0;
  });
}

}  // namespace lowbit::cli

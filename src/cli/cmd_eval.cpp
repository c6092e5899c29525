// lowbit eval MODEL --tasks piqa,arc_easy,...: zero-shot / few-shot accuracy with lm-eval v0.3's conventions
// (see eval/harness.h), on full-precision or quantized checkpoints alike.
#include <fmt/format.h>

#include "cli/common.h"
#include "core/mmap.h"
#include "eval/harness.h"

namespace lowbit::cli {

void add_eval(CLI::App& app, Global& g, Commands& out) {
  auto* sub = app.add_subcommand(
      "eval", "Task accuracy: piqa, arc_easy, arc_challenge, hellaswag, winogrande, mmlu, lambada");
  struct Opts {
    std::string model, output;
    std::string adapter;
    EvalOptions e;
  };
  auto o = std::make_shared<Opts>();
  o->e.tasks = {"piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande"};
  sub->add_option("model", o->model, "Model")->required();
  sub->add_option("--tasks", o->e.tasks, "Comma-separated tasks")->delimiter(',');
  sub->add_option("--limit", o->e.limit, "First N examples of each task (per MMLU subject); 0 = all")
      ->check(at_least(0));
  sub->add_option("--num-fewshot", o->e.num_fewshot, "Few-shot examples (default -1: MMLU 5, others 0)")
      ->check(at_least(0, -1, "the task's default"));
  sub->add_option("--max-length", o->e.max_length, "Context length; longer prompts keep their last tokens")
      ->check(at_least(2));
  sub->add_option("--log", o->e.log_path, "Write a per-example JSONL log with each choice's log-probability");
  sub->add_option("-o,--output", o->output, "Write the results JSON here (atomically)");
  add_adapter_option(sub, o->adapter);
  out.emplace_back(sub, [&g, o]() {
    LoadedModel lm = load_model(g, o->model, true, o->adapter);
    EvalOptions e = o->e;
    e.data_dir = g.paths().data_dir;
    e.model_name = lm.path;
    e.threads = g.threads;
    widen_weights_for_scoring(*lm.model, false);
    Json r = run_eval(*lm.model, *lm.tokenizer, e);
    const std::string text = r.dump(2) + "\n";
    if (!o->output.empty()) write_file_atomic(o->output, text);
    // A compact table on stderr-free stdout: task, metric, value ± stderr.
    for (auto& [task, metrics] : r["results"].items()) {
      for (auto& [name, value] : metrics.items()) {
        if (name.ends_with("_stderr") || !value.is_number()) continue;
        const std::string se = name + "_stderr";
        if (metrics.contains(se) && metrics[se].is_number())
          fmt::print("{:<28} {:<10} {:.4f} ± {:.4f}\n", task, name, value.get<double>(),
                     metrics[se].get<double>());
        else
          fmt::print("{:<28} {:<10} {:.4f}\n", task, name, value.get<double>());
      }
    }
    if (o->output.empty()) fmt::print("{}", text);
    return 0;
  });
}

}  // namespace lowbit::cli

// lowbit: quantize LLaMA-family models to 1-8 bits, run them, and measure what was lost.
#include <fmt/format.h>

#include "cli/commands.h"
#include "core/blas.h"
#include "core/error.h"
#include "core/sys.h"
#include "train/dbllm.h"

namespace {

// The global options go on the app and on every subcommand, nested ones too (`study merge`), so that they
// may be written before or after the subcommand. CLI11's fallthrough() would do that as well, but would also
// let `study merge` take study's own options (--check, --shard) and silently ignore them.
void add_global_options(CLI::App& app, lowbit::cli::Global& g) {
  app.add_option("--models-dir", g.models_dir,
                 "Folder of models (default: $LOWBIT_MODELS, else ../shared/models)");
  app.add_option("--data-dir", g.data_dir, "Folder of datasets (default: $LOWBIT_DATA, else ../shared/data)");
  app.add_option("-t,--threads", g.threads, "Threads (0 = all cores, the default)")
      ->check(lowbit::cli::at_least(0));
  // Nameless subcommands are option groups (tokenize's "source"), which belong to their command.
  for (CLI::App* sub : app.get_subcommands([](CLI::App* s) { return !s->get_name().empty(); }))
    add_global_options(*sub, g);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace lowbit;
  CLI::App app{"lowbit: low-bit quantization of LLaMA-family models, with exact evaluation"};
  app.set_version_flag("--version", fmt::format("lowbit {} (OpenBLAS kernels: {})", LOWBIT_VERSION,
                                                blas_kernels_description()));
  app.require_subcommand(1);
  // CLI11's default adds a second line ("Run with --help ..."); lowbit's errors are one line.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return fmt::format("lowbit: error: {} (--help lists the options)\n", e.what());
  });
  register_train_methods();  // before the commands read the method registry for their flags
  cli::Global g;
  std::vector<std::pair<CLI::App*, cli::Runner>> cmds;
  for (auto add : cli::kCommands) add(app, g, cmds);
  add_global_options(app, g);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    set_num_threads(g.threads);
    for (auto& [sub, run] : cmds)
      if (sub->parsed()) return run();
  } catch (const Error& e) {
    fmt::print(stderr, "lowbit: error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "lowbit: error: {}\n", e.what());
    return 1;
  }
  return 0;
}

// lowbit: quantize LLaMA-family models to 1-8 bits, run them, and measure what was lost.
#include <fmt/format.h>

#include "cli/commands.h"
#include "core/blas.h"
#include "core/error.h"
#include "core/sys.h"

int main(int argc, char** argv) {
  using namespace lowbit;
  CLI::App app{"lowbit: low-bit quantization of LLaMA-family models, with exact evaluation"};
  app.set_version_flag("--version", fmt::format("lowbit {} (OpenBLAS kernels: {})", LOWBIT_VERSION,
                                                blas_kernels_description()));
  app.require_subcommand(1);
  cli::Global g;
  app.add_option("--models-dir", g.models_dir,
                 "Folder of models (default: $LOWBIT_MODELS, else ../shared/models)");
  app.add_option("--data-dir", g.data_dir, "Folder of datasets (default: $LOWBIT_DATA, else ../shared/data)");
  app.add_option("-t,--threads", g.threads, "Threads (default: all cores)");

  std::vector<std::pair<CLI::App*, cli::Runner>> cmds;
  for (auto add : cli::kCommands) add(app, g, cmds);

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

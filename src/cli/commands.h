// Each subcommand lives in its own cmd_*.cpp and registers itself on the app here.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/paths.h"

namespace lowbit::cli {

struct Global {
  std::string models_dir, data_dir;
  int threads = 0;
  SearchPaths paths() const { return find_search_paths(models_dir, data_dir); }
};

// Check for an integer count option: CLI11 takes "-3" for an int without complaint, and a negative count
// would then silently mean "all" or "the default". `sentinel`, when given, is a documented special value
// below min (e.g. -1 = the task's default) and `sentinel_means` says what it means in the error.
CLI::Validator at_least(int64_t min, std::optional<int64_t> sentinel = std::nullopt,
                        const std::string& sentinel_means = "");

// Returns the function to run when the subcommand was chosen.
using Runner = std::function<int()>;
using Commands = std::vector<std::pair<CLI::App*, Runner>>;
using AddCommand = void (*)(CLI::App& app, Global& g, Commands& out);

void add_info(CLI::App& app, Global& g, Commands& out);
void add_tokenize(CLI::App& app, Global& g, Commands& out);
void add_generate(CLI::App& app, Global& g, Commands& out);
void add_ppl(CLI::App& app, Global& g, Commands& out);
void add_synth(CLI::App& app, Global& g, Commands& out);
void add_quantize(CLI::App& app, Global& g, Commands& out);
void add_finetune(CLI::App& app, Global& g, Commands& out);
void add_eval(CLI::App& app, Global& g, Commands& out);
void add_study(CLI::App& app, Global& g, Commands& out);
void add_report(CLI::App& app, Global& g, Commands& out);

// The subcommands, in --help order. Add a new one here and in its own cmd_<name>.cpp.
inline const std::vector<AddCommand> kCommands = {add_info,   add_tokenize, add_generate, add_ppl,
                                                  add_eval,   add_quantize, add_finetune, add_study,
                                                  add_report, add_synth};

}  // namespace lowbit::cli

// Where models and data live. Order: explicit option > environment (LOWBIT_MODELS, LOWBIT_DATA, LOWBIT_REFS,
// LOWBIT_PAPER)
// > a `shared/` folder next to the current directory or any of its ancestors (the repository sits beside it).
#pragma once
#include <optional>
#include <string>

namespace lowbit {

struct SearchPaths {
  std::string models_dir;  // empty when none was found
  std::string data_dir;
  std::string refs_dir;
  std::string paper_dir;  // the study's published tables (LOWBIT_PAPER, or shared/paper); may be empty
};

// explicit_* override; empty means "not given".
SearchPaths find_search_paths(const std::string& explicit_models = "", const std::string& explicit_data = "");

// A model argument may be a path or a name under the models dir (e.g. "testbed-25m"). Throws when neither
// exists.
std::string resolve_model_path(const std::string& arg, const SearchPaths& paths);
// A data-file argument relative to the data dir (e.g. "wikitext-2-raw/wiki.test.raw"); throws naming the
// file.
std::string resolve_data_path(const std::string& rel, const SearchPaths& paths);

bool path_exists(const std::string& p);
bool is_directory(const std::string& p);

}  // namespace lowbit

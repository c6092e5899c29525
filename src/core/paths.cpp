#include "core/paths.h"

#include <cstdlib>
#include <filesystem>

#include "core/error.h"

namespace fs = std::filesystem;

namespace lowbit {

bool path_exists(const std::string& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}
bool is_directory(const std::string& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

static std::string find_shared_dir() {
  std::error_code ec;
  fs::path dir = fs::current_path(ec);
  if (ec) return "";
  for (int depth = 0; depth < 8 && !dir.empty(); ++depth) {
    fs::path cand = dir / "shared";
    if (fs::is_directory(cand / "models", ec) || fs::is_directory(cand / "data", ec)) return cand.string();
    fs::path parent = dir.parent_path();
    if (parent == dir) break;
    dir = parent;
  }
  return "";
}

static std::string env_or(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : std::string();
}

SearchPaths find_search_paths(const std::string& explicit_models, const std::string& explicit_data) {
  SearchPaths p;
  p.models_dir = !explicit_models.empty() ? explicit_models : env_or("LOWBIT_MODELS");
  p.data_dir = !explicit_data.empty() ? explicit_data : env_or("LOWBIT_DATA");
  p.refs_dir = env_or("LOWBIT_REFS");
  p.paper_dir = env_or("LOWBIT_PAPER");
  if (p.models_dir.empty() || p.data_dir.empty() || p.refs_dir.empty() || p.paper_dir.empty()) {
    std::string shared = find_shared_dir();
    if (!shared.empty()) {
      if (p.models_dir.empty() && is_directory(shared + "/models")) p.models_dir = shared + "/models";
      if (p.data_dir.empty() && is_directory(shared + "/data")) p.data_dir = shared + "/data";
      if (p.refs_dir.empty() && is_directory(shared + "/refs")) p.refs_dir = shared + "/refs";
      if (p.paper_dir.empty() && is_directory(shared + "/paper")) p.paper_dir = shared + "/paper";
    }
  }
  if (p.refs_dir.empty() && !p.data_dir.empty() && is_directory(p.data_dir + "/../refs"))
    p.refs_dir = p.data_dir + "/../refs";
  if (p.paper_dir.empty() && !p.data_dir.empty() && is_directory(p.data_dir + "/../paper"))
    p.paper_dir = p.data_dir + "/../paper";
  return p;
}

std::string resolve_model_path(const std::string& arg, const SearchPaths& paths) {
  if (path_exists(arg)) return arg;
  if (!paths.models_dir.empty()) {
    std::string cand = paths.models_dir + "/" + arg;
    if (path_exists(cand)) return cand;
  }
  fail(
      "{}: model not found (not a path, and not under the models dir '{}'; set --models-dir or "
      "LOWBIT_MODELS)",
      arg, paths.models_dir.empty() ? "<none found>" : paths.models_dir);
}

std::string resolve_data_path(const std::string& rel, const SearchPaths& paths) {
  if (path_exists(rel)) return rel;
  if (!paths.data_dir.empty()) {
    std::string cand = paths.data_dir + "/" + rel;
    if (path_exists(cand)) return cand;
  }
  fail("{}: data file not found (data dir '{}'; set --data-dir or LOWBIT_DATA)", rel,
       paths.data_dir.empty() ? "<none found>" : paths.data_dir);
}

}  // namespace lowbit

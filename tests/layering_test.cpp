// The layer diagram, enforced: every #include "layer/..." in src/ points to the file's own layer or one it
// may use (LOWBIT_LAYER_DEPS, the list CMakeLists.txt links the layer libraries by), and only kernels/ (and
// core/blas, core/lapack) talk to BLAS or Highway. A planted upward include is caught (the second test).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "test_util.h"

namespace fs = std::filesystem;

namespace lowbit {
namespace {

// "core: formats:core kernels:formats ..." -> each layer's reachable layers (itself included).
std::map<std::string, std::set<std::string>> reachable_layers(const std::string& spec) {
  std::map<std::string, std::vector<std::string>> direct;
  std::istringstream in(spec);
  std::string entry;
  while (in >> entry) {
    const size_t colon = entry.find(':');
    std::vector<std::string>& d = direct[entry.substr(0, colon)];
    std::istringstream deps(entry.substr(colon + 1));
    std::string dep;
    while (std::getline(deps, dep, ','))
      if (!dep.empty()) d.push_back(dep);
  }
  std::map<std::string, std::set<std::string>> out;
  for (const auto& [layer, _] : direct) {
    std::vector<std::string> todo{layer};
    std::set<std::string>& seen = out[layer];
    while (!todo.empty()) {
      const std::string l = todo.back();
      todo.pop_back();
      if (!seen.insert(l).second) continue;
      for (const std::string& d : direct[l]) todo.push_back(d);
    }
  }
  return out;
}

// One line per violation: "<file>:<line>: <layer> includes <header> (<layer> may use: ...)".
std::vector<std::string> layering_violations(const fs::path& src, const std::string& spec) {
  const auto allowed = reachable_layers(spec);
  std::set<std::string> layers;
  for (const auto& [l, _] : allowed) layers.insert(l);
  layers.insert("cli");  // the program: may use every layer, and no layer may use it
  const std::regex inc(R"re(^\s*#\s*include\s*"([a-z_]+)/[^"]+")re");
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    const fs::path rel = fs::relative(e.path(), src);
    const std::string layer = rel.begin()->string();
    if (!layers.count(layer)) {
      if (e.path().extension() == ".cpp" || e.path().extension() == ".h")
        out.push_back(rel.string() + ": not in any layer (add its folder to LOWBIT_LAYER_DEPS)");
      continue;
    }
    std::ifstream f(e.path());
    std::string line;
    for (int n = 1; std::getline(f, line); ++n) {
      std::smatch m;
      if (!std::regex_search(line, m, inc)) continue;
      const std::string to = m[1];
      if (layer == "cli" ? to != "cli" && !layers.count(to) : !allowed.at(layer).count(to))
        out.push_back(rel.string() + ":" + std::to_string(n) + ": " + layer + " includes " + to + "/");
    }
  }
  return out;
}

// Files outside kernels/ (and core's BLAS/LAPACK wrappers) that call BLAS or Highway directly.
std::vector<std::string> backend_calls_outside_kernels(const fs::path& src) {
  const std::regex call(R"re(cblas_|openblas_|#\s*include\s*<(cblas\.h|hwy/))re");
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    const std::string rel = fs::relative(e.path(), src).string();
    if (rel.starts_with("kernels/") || rel.starts_with("core/blas.") || rel.starts_with("core/lapack."))
      continue;
    std::ifstream f(e.path());
    std::string line;
    for (int n = 1; std::getline(f, line); ++n)
      if (std::regex_search(line, call)) out.push_back(rel + ":" + std::to_string(n) + ": " + line);
  }
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

TEST(Layering, EveryIncludePointsToALayerBelow) {
  const auto v = layering_violations(fs::path(LOWBIT_SOURCE_DIR) / "src", LOWBIT_LAYER_DEPS);
  EXPECT_TRUE(v.empty()) << joined(v);
}

TEST(Layering, OnlyKernelsCallBlasOrHighway) {
  const auto v = backend_calls_outside_kernels(fs::path(LOWBIT_SOURCE_DIR) / "src");
  EXPECT_TRUE(v.empty()) << joined(v);
}

// The checks above on a copy of src/ with violations planted: they must name each one.
TEST(Layering, CatchesPlantedViolations) {
  const fs::path tree = fs::path(test::temp_dir("layers")) / "src";
  fs::copy(fs::path(LOWBIT_SOURCE_DIR) / "src", tree, fs::copy_options::recursive);
  ASSERT_TRUE(layering_violations(tree, LOWBIT_LAYER_DEPS).empty());
  {
    std::ofstream f(tree / "model" / "llama.cpp", std::ios::app);
    f << "#include \"study/spec.h\"\n";  // model reaching up into study
  }
  {
    std::ofstream f(tree / "eval" / "kld.cpp", std::ios::app);
    f << "#include \"quant/quantize.h\"\n";  // a sibling: eval may not use quant
  }
  {
    std::ofstream f(tree / "quant" / "calib.cpp", std::ios::app);
    f << "void f() { cblas_sdot(0, nullptr, 1, nullptr, 1); }\n";
  }
  const auto v = layering_violations(tree, LOWBIT_LAYER_DEPS);
  ASSERT_EQ(v.size(), 2u) << joined(v);
  EXPECT_NE(joined(v).find("model/llama.cpp:"), std::string::npos) << joined(v);
  EXPECT_NE(joined(v).find(": model includes study/"), std::string::npos) << joined(v);
  EXPECT_NE(joined(v).find(": eval includes quant/"), std::string::npos) << joined(v);
  const auto b = backend_calls_outside_kernels(tree);
  ASSERT_EQ(b.size(), 1u) << joined(b);
  EXPECT_TRUE(b[0].starts_with("quant/calib.cpp:")) << b[0];
}

TEST(Layering, DependencyListIsTransitive) {
  const auto r =
      reachable_layers("core: formats:core kernels:formats io:formats model:io,kernels quant:model");
  EXPECT_EQ(r.at("quant"), (std::set<std::string>{"core", "formats", "kernels", "io", "model", "quant"}));
  EXPECT_EQ(r.at("io"), (std::set<std::string>{"core", "formats", "io"}));
}

}  // namespace
}  // namespace lowbit

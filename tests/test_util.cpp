#include "test_util.h"

#include <hwy/targets.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/mmap.h"

namespace fs = std::filesystem;

namespace lowbit::test {

const SearchPaths& paths() {
  static SearchPaths p = [] {
    SearchPaths sp = find_search_paths();
    if (sp.models_dir.empty() || sp.data_dir.empty() || sp.refs_dir.empty()) {
      ADD_FAILURE() << "../shared (models, data, refs) not found: run tests from inside the repository, "
                       "or set LOWBIT_MODELS, LOWBIT_DATA and LOWBIT_REFS";
    }
    return sp;
  }();
  return p;
}

std::string model_path(const std::string& name) {
  return paths().models_dir + "/" + name;
}
std::string data_path(const std::string& rel) {
  return paths().data_dir + "/" + rel;
}

const Json& testbed_refs() {
  static Json j = parse_json_file(paths().refs_dir + "/testbed-25m.json");
  return j;
}
const Json& llama3_tokenizer_refs() {
  static Json j = parse_json_file(paths().refs_dir + "/llama3-tokenizer.json");
  return j;
}

namespace {
struct TempRoot {
  fs::path root;
  TempRoot() {
    root = fs::temp_directory_path() / ("lowbit-test-" + std::to_string(::getpid()));
    fs::create_directories(root);
  }
  ~TempRoot() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
};
TempRoot& temp_root() {
  static TempRoot r;
  return r;
}
}  // namespace

std::string temp_dir(const std::string& tag) {
  static int counter = 0;
  fs::path p = temp_root().root / (tag + "-" + std::to_string(counter++));
  fs::create_directories(p);
  return p.string();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

CliResult run_cli(const std::string& args) {
  std::string dir = temp_dir("cli");
  std::string out = dir + "/out", err = dir + "/err";
  std::string cmd = std::string(LOWBIT_CLI_PATH) + " " + args + " >" + out + " 2>" + err + " </dev/null";
  int st = std::system(cmd.c_str());
  CliResult r;
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

void for_each_simd_target(const std::function<void()>& body) {
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_FALSE(targets.empty());
  for (int64_t t : targets) {
    hwy::SetSupportedTargetsForTest(t);
    SCOPED_TRACE(hwy::TargetName(t));
    body();
  }
  hwy::SetSupportedTargetsForTest(0);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace lowbit::test

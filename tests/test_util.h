// Helpers shared by tests: where ../shared is, running the CLI, temp dirs.
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "core/json.h"
#include "core/paths.h"

namespace lowbit::test {

// Search paths for models/data/refs. Fails the test (never skips) when ../shared cannot be found: it is in
// CI.
const SearchPaths& paths();
std::string model_path(const std::string& name);  // e.g. "testbed-25m"
std::string data_path(const std::string& rel);    // e.g. "wikitext-2-raw/wiki.test.raw"
const Json& testbed_refs();                       // refs/testbed-25m.json
const Json& llama3_tokenizer_refs();              // refs/llama3-tokenizer.json

// A fresh empty directory under the system temp dir, removed at process exit.
std::string temp_dir(const std::string& tag);
void write_bytes(const std::string& path, const std::string& bytes);

// Runs body once per Highway target compiled in and supported on this CPU, with dispatch pinned to it, so
// every SIMD kernel's test covers every target (AVX3, AVX2, SSE4, ...), not just the best one.
void for_each_simd_target(const std::function<void()>& body);
// The message of the lowbit::Error f throws, or "(no error)".
std::string error_of(const std::function<void()>& f);

struct CliResult {
  int exit_code;
  std::string out, err;
};
// Runs the built `lowbit` binary with args (shell-quoted by the caller where needed).
CliResult run_cli(const std::string& args);

}  // namespace lowbit::test

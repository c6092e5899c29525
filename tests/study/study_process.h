// Running `lowbit` as a child process for the study's end-to-end tests (study_resume_test,
// study_finetune_test): start it with its output in a log, wait for it or kill it, and read a store back.
#pragma once
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "study/store.h"
#include "test_util.h"

extern char** environ;

namespace lowbit::study_process {

struct Proc {
  pid_t pid = -1;
};

// Starts `lowbit -t 2 <args>` with stdout/stderr appended to log.
inline Proc start(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> argv_s = {LOWBIT_CLI_PATH,
                                     "--models-dir",
                                     test::paths().models_dir,
                                     "--data-dir",
                                     test::paths().data_dir,
                                     "-t",
                                     "2"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  Proc p;
  EXPECT_EQ(posix_spawn(&p.pid, argv[0], &fa, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  return p;
}

// Waits up to `seconds`; returns the exit status, or -1 if it is still running.
inline int wait_for(const Proc& p, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    int st = 0;
    if (waitpid(p.pid, &st, WNOHANG) == p.pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (std::chrono::steady_clock::now() > end) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

inline int run_to_end(const std::vector<std::string>& args, const std::string& log) {
  return wait_for(start(args, log), 900);
}

inline std::map<std::string, std::string> metrics_by_key(const std::string& store) {
  std::map<std::string, std::string> m;
  for (const CellRecord& c : ResultStore(store).cells()) {
    EXPECT_EQ(m.count(c.key), 0u) << "duplicate cell " << c.key;
    m[c.key] = c.column + " " + c.row.dump() + " " + c.metrics.dump();
  }
  return m;
}

}  // namespace lowbit::study_process

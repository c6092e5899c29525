// `lowbit study` end to end on a tiny study: killed with SIGKILL at random points and restarted, it ends with
// the same store and table as an uninterrupted run; two shards merged equal one unsharded run; a bad study
// file fails before any work (no store is created).
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "core/mmap.h"
#include "study/store.h"
#include "study_process.h"
#include "test_util.h"

namespace lowbit {
namespace {

using namespace study_process;

const char* kTiny = R"(name = "tiny"
models = ["testbed-25m"]
[calibration]
file = "calib/testbed-calib.txt"
nsamples = 2
seqlen = 256
[perplexity]
datasets = ["wikitext2", "ptb"]
seqlen = 256
max_windows = 2
kld = true
[tasks]
names = ["piqa", "winogrande"]
limit = 3
[[rows]]
method = "fp16"
[[rows]]
method = "rtn"
wbits = [4, 2]
group = 128
[[rows]]
method = "gptq"
wbits = 3
group = 128
)";
constexpr size_t kTinyCells = 4 + 3 * 5;  // fp16: 2 ppl + 2 tasks; each quantized row adds "quant"

std::vector<std::string> study_args(const std::string& dir, const std::string& name) {
  return {"study",       dir + "/tiny.toml",          "--store",      dir + "/" + name + ".sqlite",
          "--cache-dir", dir + "/" + name + ".cache", "--report-dir", dir + "/" + name + "-report"};
}

class StudyRun : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = test::temp_dir("study");
    test::write_bytes(dir_ + "/tiny.toml", kTiny);
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(run_to_end(study_args(dir_, "ref"), dir_ + "/ref.log"), 0) << read_file(dir_ + "/ref.log");
    ref_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ref_ = metrics_by_key(dir_ + "/ref.sqlite");
  }
  static std::string dir_;
  static double ref_seconds_;
  static std::map<std::string, std::string> ref_;
};
std::string StudyRun::dir_;
double StudyRun::ref_seconds_ = 0;
std::map<std::string, std::string> StudyRun::ref_;

TEST_F(StudyRun, UninterruptedRunStoresEveryCellAndReports) {
  EXPECT_EQ(ref_.size(), kTinyCells);
  const std::string md = read_file(dir_ + "/ref-report/report.md");
  for (const char* s : {"FP16", "RTN", "GPTQ", "PIQA", "Wino"}) EXPECT_NE(md.find(s), std::string::npos) << s;
  // A second run finds everything stored and computes nothing.
  ASSERT_EQ(run_to_end(study_args(dir_, "ref"), dir_ + "/ref2.log"), 0);
  const std::string log = read_file(dir_ + "/ref2.log");
  EXPECT_NE(log.find("computed 0 cells"), std::string::npos) << log;
  // ... and still reports the whole study's compute time, summed over the cells stored by the first run.
  EXPECT_NE(log.find(fmt::format("its {} stored cells took", kTinyCells)), std::string::npos) << log;
  EXPECT_EQ(metrics_by_key(dir_ + "/ref.sqlite"), ref_);
  // --check counts the plan's cells against the store, and never creates one.
  auto check = [&](const std::string& name) {
    std::vector<std::string> args = study_args(dir_, name);
    args.push_back("--check");
    const std::string log_path = dir_ + "/check-" + name + ".log";
    EXPECT_EQ(run_to_end(args, log_path), 0);
    return read_file(log_path);
  };
  const std::string full = check("ref");
  EXPECT_NE(full.find(fmt::format("{} cells; inputs OK; {} of them stored", kTinyCells, kTinyCells)),
            std::string::npos)
      << full;
  EXPECT_NE(full.find(" in all; 0 to compute"), std::string::npos) << full;
  const std::string none = check("absent");
  EXPECT_NE(none.find(fmt::format(
                "0 of them stored in {}/absent.sqlite (not there yet), taking 0:00 in all; {} to compute",
                dir_, kTinyCells)),
            std::string::npos)
      << none;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/absent.sqlite"));
}

TEST_F(StudyRun, KilledAtRandomPointsAndRestartedEqualsUninterrupted) {
  std::mt19937 rng(20261125);
  std::uniform_real_distribution<double> frac(0.05, 0.6);
  const auto args = study_args(dir_, "killed");
  int kills = 0;
  for (int attempt = 0; attempt < 4; ++attempt) {
    const Proc p = start(args, dir_ + "/killed.log");
    const double at = frac(rng) * ref_seconds_;
    const int rc = wait_for(p, at);
    if (rc == -1) {
      kill(p.pid, SIGKILL);
      waitpid(p.pid, nullptr, 0);
      ++kills;
    } else {
      ASSERT_EQ(rc, 0) << read_file(dir_ + "/killed.log");
      break;
    }
  }
  EXPECT_GE(kills, 2) << "the study finished before it could be killed; the test proves nothing";
  ASSERT_EQ(run_to_end(args, dir_ + "/killed.log"), 0) << read_file(dir_ + "/killed.log");
  EXPECT_EQ(metrics_by_key(dir_ + "/killed.sqlite"), ref_);
  EXPECT_EQ(read_file(dir_ + "/killed-report/report.md"), read_file(dir_ + "/ref-report/report.md"));
}

TEST_F(StudyRun, ShardsMergedEqualOneRun) {
  for (const char* shard : {"1/2", "2/2"}) {
    auto args = study_args(dir_, std::string("shard") + shard[0]);
    args.insert(args.end(), {"--shard", shard});
    ASSERT_EQ(run_to_end(args, dir_ + "/shard.log"), 0) << read_file(dir_ + "/shard.log");
  }
  EXPECT_LT(metrics_by_key(dir_ + "/shard1.sqlite").size(), kTinyCells);
  ASSERT_EQ(run_to_end({"study", "merge", "--store", dir_ + "/merged.sqlite", dir_ + "/shard1.sqlite",
                        dir_ + "/shard2.sqlite"},
                       dir_ + "/merge.log"),
            0)
      << read_file(dir_ + "/merge.log");
  EXPECT_EQ(metrics_by_key(dir_ + "/merged.sqlite"), ref_);
  ASSERT_EQ(run_to_end({"report", dir_ + "/merged.sqlite", "--study", dir_ + "/tiny.toml", "-o",
                        dir_ + "/merged-report"},
                       dir_ + "/report.log"),
            0)
      << read_file(dir_ + "/report.log");
  EXPECT_EQ(read_file(dir_ + "/merged-report/report.md"), read_file(dir_ + "/ref-report/report.md"));
}

TEST_F(StudyRun, ReportListsRowsInTheStudysOrderNotTheStores) {
  // The same cells under a study that lists its rows the other way round: the store holds them in the first
  // study's order, the report must follow the second study's.
  std::string reversed(kTiny);
  const size_t rows = reversed.find("[[rows]]");
  reversed = reversed.substr(0, rows) +
             "[[rows]]\nmethod = \"gptq\"\nwbits = 3\ngroup = 128\n"
             "[[rows]]\nmethod = \"rtn\"\nwbits = [2, 4]\ngroup = 128\n"
             "[[rows]]\nmethod = \"fp16\"\n";
  test::write_bytes(dir_ + "/reversed.toml", reversed);
  ASSERT_EQ(run_to_end({"report", dir_ + "/ref.sqlite", "--study", dir_ + "/reversed.toml", "-o",
                        dir_ + "/reversed-report"},
                       dir_ + "/reversed.log"),
            0)
      << read_file(dir_ + "/reversed.log");
  const std::string md = read_file(dir_ + "/reversed-report/report.md");
  const size_t gptq = md.find("| GPTQ "), rtn2 = md.find("| RTN    |   2 "),
               rtn4 = md.find("| RTN    |   4 "), fp16 = md.find("| FP16 ");
  ASSERT_NE(fp16, std::string::npos) << md;
  EXPECT_LT(gptq, rtn2) << md;
  EXPECT_LT(rtn2, rtn4) << md;
  EXPECT_LT(rtn4, fp16) << md;
  // The first study's own report keeps its order.
  const std::string ref = read_file(dir_ + "/ref-report/report.md");
  EXPECT_LT(ref.find("| FP16 "), ref.find("| RTN    |   4 ")) << ref;
  EXPECT_LT(ref.find("| RTN    |   4 "), ref.find("| GPTQ ")) << ref;
}

TEST(StudyCli, BadStudyFailsBeforeAnyWork) {
  const std::string dir = test::temp_dir("badstudy");
  test::write_bytes(dir + "/bad.toml",
                    std::string(kTiny) + "[[rows]]\nmethod = \"gptq\"\nwbits = 3\ngroup = 100\n");
  const auto r = test::run_cli("study " + dir + "/bad.toml --store " + dir + "/s.sqlite");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("bad.toml: rows[3]: testbed-25m: --group 100 does not divide"), std::string::npos)
      << r.err;
  EXPECT_FALSE(path_exists(dir + "/s.sqlite"));
}

}  // namespace
}  // namespace lowbit

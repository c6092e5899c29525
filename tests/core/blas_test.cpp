#include "core/blas.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "core/mmap.h"
#include "test_util.h"

namespace lowbit {
namespace {

TEST(BlasCore, OverrideReplacesOnlyPreAvx2Families) {
  // OpenBLAS 0.3.21's fallback on an unknown Intel model, by feature level of the CPU.
  EXPECT_EQ(blas_core_override("Prescott", true, true), "SkylakeX");
  EXPECT_EQ(blas_core_override("prescott", true, true), "SkylakeX");  // OpenBLAS spells some in lower case
  EXPECT_EQ(blas_core_override("Prescott", false, true), "Haswell");
  EXPECT_EQ(blas_core_override("Nehalem", false, true), "Haswell");
  EXPECT_EQ(blas_core_override("Sandybridge", true, true), "SkylakeX");
  EXPECT_EQ(blas_core_override("Prescott", false, false), "");  // a genuinely old CPU keeps its kernels
  // Families that OpenBLAS chose knowingly are kept, even where a wider one would run.
  EXPECT_EQ(blas_core_override("SkylakeX", true, true), "");
  EXPECT_EQ(blas_core_override("Haswell", true, true), "");
  EXPECT_EQ(blas_core_override("Cooperlake", true, true), "");
  EXPECT_EQ(blas_core_override("Zen", false, true), "");
  EXPECT_EQ(blas_core_override("", true, true), "");
}

// Both this test binary and the CLI link the start-up check. On a CPU newer than the installed OpenBLAS
// (this project's CI machines: Emerald Rapids under OpenBLAS 0.3.21) they must end up on the kernels the CPU
// supports; elsewhere OpenBLAS's own choice already is one.
TEST(BlasCore, ThisProcessRunsKernelsItsCpuSupports) {
  if (std::getenv("OPENBLAS_CORETYPE") && !std::getenv("LOWBIT_BLAS_CORE_REPLACED"))
    GTEST_SKIP() << "OPENBLAS_CORETYPE was set by the user";
  EXPECT_EQ(blas_core_override_here(blas_core_name()), "") << "running " << blas_kernels_description();
}

TEST(BlasCore, CliStartedWithoutTheVariableReExecutesOntoSupportedKernels) {
  const std::string out = test::temp_dir("blas") + "/version";
  const std::string cmd = "env -u OPENBLAS_CORETYPE -u LOWBIT_BLAS_CORE_REPLACED " +
                          std::string(LOWBIT_CLI_PATH) + " --version >" + out + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const std::string text = read_file(out);
  const std::string key = "OpenBLAS kernels: ";
  const size_t at = text.find(key);
  ASSERT_NE(at, std::string::npos) << text;
  const std::string rest = text.substr(at + key.size());
  const std::string family = rest.substr(0, rest.find_first_of(" )\n"));
  EXPECT_EQ(blas_core_override_here(family), "") << text;
  // When it replaced OpenBLAS's choice, it names that choice, a family this CPU outgrows.
  const std::string tag = "replacing OpenBLAS's ";
  if (const size_t r = rest.find(tag); r != std::string::npos) {
    const std::string from = rest.substr(r + tag.size(), rest.find(')', r) - r - tag.size());
    EXPECT_NE(blas_core_override_here(from), "") << text;
  }
}

}  // namespace
}  // namespace lowbit

// The format table: the affine entry's bits per weight, its reference dequantizer, and its checkpoint
// tensors read back through from_tensors (what loading and spilling do), including malformed ones.
#include "formats/format.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>

#include "core/dtype.h"
#include "core/error.h"
#include "formats/affine.h"
#include "formats/dualbin.h"
#include "formats/nf4.h"
#include "formats/random_affine.h"
#include "kernels/format_kernels.h"

namespace lowbit {
namespace {

TEST(FormatTable, EveryFormatIsRegisteredWithItsKernels) {
  ASSERT_EQ(find_format("affine"), &affine_format());
  ASSERT_EQ(find_format("nf4"), &nf4_format());
  ASSERT_EQ(find_format("dualbin"), &dualbin_format());
  EXPECT_EQ(find_format("fp4"), nullptr);
  for (const Format* f : packed_formats()) EXPECT_NO_THROW(format_kernels(*f)) << f->name;
}

TEST(FormatTable, AffineTensorsReadBackBitwiseAndCountEveryBit) {
  for (bool gi : {false, true}) {
    std::mt19937 rng(3);
    const test::RandomAffine b = test::random_affine(3, 6, 256, 64, gi, rng);
    const AffineWeight& w = b.w;
    // 3 bits of code, 16 + 8 bits per group of 64, 32 bits of g_idx per column (over 6 rows).
    const double want = 3.0 + 24.0 / 64 + (gi ? 32.0 / 6 : 0);
    EXPECT_DOUBLE_EQ(affine_format().bits_per_weight(w), want);
    std::map<std::string, TensorView> stored;
    for (FormatTensor& t : affine_format().tensors(w)) stored[t.suffix] = t.view;
    EXPECT_EQ(stored.size(), gi ? 4u : 3u);
    auto get = [&](std::string_view s) -> const TensorView* {
      auto it = stored.find(std::string(s));
      return it == stored.end() ? nullptr : &it->second;
    };
    auto back = affine_format().from_tensors(get, 6, 256, "x");
    ASSERT_EQ(&back->format(), &affine_format());
    std::vector<float> a(6 * 256), c(6 * 256);
    affine_format().dequantize_ref(w, 0, 6, a.data());
    format_kernels(back->format()).dequantize_rows(*back, 0, 6, c.data());
    EXPECT_EQ(a, c);
  }
}

TEST(FormatTable, MalformedAffineTensorsGiveOneLineErrors) {
  std::mt19937 rng(4);
  const test::RandomAffine b = test::random_affine(4, 2, 64, 32, false, rng);
  const AffineWeight& w = b.w;
  std::map<std::string, TensorView> stored;
  for (FormatTensor& t : affine_format().tensors(w)) stored[t.suffix] = t.view;
  auto error = [&](int64_t rows, int64_t cols) {
    auto get = [&](std::string_view s) -> const TensorView* {
      auto it = stored.find(std::string(s));
      return it == stored.end() ? nullptr : &it->second;
    };
    try {
      affine_format().from_tensors(get, rows, cols, "f.safetensors: L");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error(3, 64), "f.safetensors: L.qcodes is U8 (2, 32), expected U8 (3, 32)");
  stored.erase("qzeros");
  EXPECT_EQ(error(2, 64),
            "f.safetensors: L.qzeros: missing (the affine format needs qcodes, scales and qzeros)");
}

// safetensors does not align tensors: scales and g_idx at odd addresses are read through aligned copies
// (found by fuzz/packed_linear_fuzz under UBSan), with the same values.
TEST(FormatTable, MisalignedAffineTensorsAreCopiedNotReadMisaligned) {
  std::mt19937 rng(5);
  const test::RandomAffine b = test::random_affine(4, 3, 64, 16, true, rng);
  std::map<std::string, TensorView> stored;
  std::vector<std::vector<uint8_t>> odd;  // each tensor's bytes at offset 1 of its own buffer
  for (FormatTensor& t : affine_format().tensors(b.w)) {
    odd.emplace_back(t.view.nbytes + 1);
    std::memcpy(odd.back().data() + 1, t.view.data, t.view.nbytes);
    t.view.data = odd.back().data() + 1;
    stored[t.suffix] = t.view;
  }
  auto get = [&](std::string_view s) -> const TensorView* {
    auto it = stored.find(std::string(s));
    return it == stored.end() ? nullptr : &it->second;
  };
  auto w = affine_format().from_tensors(get, 3, 64, "x");
  EXPECT_TRUE(w->owner);  // it holds the copies
  std::vector<float> a(3 * 64), c(3 * 64);
  affine_format().dequantize_ref(b.w, 0, 3, a.data());
  affine_format().dequantize_ref(*w, 0, 3, c.data());
  EXPECT_EQ(a, c);
}

}  // namespace
}  // namespace lowbit

// The format table: the affine entry's bits per weight, its reference dequantizer, and its checkpoint
// tensors read back through from_tensors (what loading and spilling do), including malformed ones.
#include "formats/format.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "core/dtype.h"
#include "core/error.h"
#include "formats/affine.h"
#include "kernels/format_kernels.h"

namespace lowbit {
namespace {

struct Buffers {
  std::vector<uint8_t> codes, zeros;
  std::vector<uint16_t> scales;
  std::vector<int32_t> g_idx;
};

AffineWeight make(Buffers& b, int bits, int64_t rows, int64_t cols, int64_t gs, bool with_g_idx) {
  AffineWeight w;
  w.bits = bits, w.rows = rows, w.cols = cols, w.group_size = gs;
  std::mt19937 g(uint32_t(bits * 100 + cols));
  b.codes.assign(size_t(rows) * w.row_bytes(), 0);
  for (auto& c : b.codes) c = uint8_t(g());
  b.scales.resize(size_t(rows * w.n_groups()));
  for (auto& s : b.scales) s = f32_to_f16(0.01f + float(g() % 100) / 1000);
  b.zeros.resize(size_t(rows * w.n_groups()));
  for (auto& z : b.zeros) z = uint8_t(g() % (1u << bits));
  if (with_g_idx) {
    b.g_idx.resize(size_t(cols));
    for (int64_t c = 0; c < cols; ++c) b.g_idx[size_t(c)] = int32_t((c * 7) % w.n_groups());
  }
  w.codes = b.codes.data(), w.scales = b.scales.data(), w.zeros = b.zeros.data();
  w.g_idx = with_g_idx ? b.g_idx.data() : nullptr;
  return w;
}

TEST(FormatTable, AffineIsRegisteredWithItsKernels) {
  ASSERT_EQ(find_format("affine"), &affine_format());
  EXPECT_EQ(find_format("nf4"), nullptr);
  EXPECT_NO_THROW(format_kernels(affine_format()));
}

TEST(FormatTable, AffineTensorsReadBackBitwiseAndCountEveryBit) {
  for (bool gi : {false, true}) {
    Buffers b;
    const AffineWeight w = make(b, 3, 6, 256, 64, gi);
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
  Buffers b;
  const AffineWeight w = make(b, 4, 2, 64, 32, false);
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

}  // namespace
}  // namespace lowbit

// The partial-binarization format (formats/pbllm.h, PB-LLM §3.2): the reference dequantizer against its
// definition, exact bits per weight with the smaller of the two mask encodings, the checkpoint tensors read
// back through from_tensors in both encodings (and misaligned), and malformed tensors as one-line errors.
#include "formats/pbllm.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include "core/dtype.h"
#include "core/error.h"
#include "formats/random_pbllm.h"
#include "kernels/format_kernels.h"
#include "test_util.h"

namespace lowbit {
namespace {

using Stored = std::map<std::string, TensorView>;

Stored stored_tensors(const PackedWeight& w) {
  Stored out;
  for (FormatTensor& t : pbllm_format().tensors(w)) out[t.suffix] = t.view;
  return out;
}

std::shared_ptr<PackedWeight> load(const Stored& s, int64_t rows, int64_t cols) {
  auto get = [&](std::string_view k) -> const TensorView* {
    auto it = s.find(std::string(k));
    return it == s.end() ? nullptr : &it->second;
  };
  return pbllm_format().from_tensors(get, rows, cols, "f.safetensors: L");
}

std::vector<float> dequantized(const PackedWeight& w) {
  std::vector<float> out(size_t(w.rows * w.cols));
  w.format().dequantize_ref(w, 0, w.rows, out.data());
  return out;
}

TEST(PbllmFormat, IsRegisteredWithItsKernels) {
  ASSERT_EQ(find_format("pbllm"), &pbllm_format());
  EXPECT_EQ(pbllm_format().marker_suffix, "pb_signs");
  EXPECT_NO_THROW(format_kernels(pbllm_format()));
}

TEST(PbllmFormat, ReferenceIsTheDefinitionInF32) {
  std::mt19937 rng(1);
  const test::RandomPbllm p = test::random_pbllm(5, 256, 64, 0.2, rng);
  const std::vector<float> out = dequantized(*p.w);
  for (int64_t r = 0; r < 5; ++r)
    for (int64_t c = 0; c < 256; ++c) {
      const size_t i = size_t(r * 256 + c), g = size_t(r * 4 + c / 64);
      const float mu = f16_to_f32(f32_to_f16(p.mu[g])), a = f16_to_f32(f32_to_f16(p.alpha[g]));
      const float want = p.salient[i] ? p.S[size_t(r)] * (float(p.codes[i]) - p.Z[size_t(r)])
                                      : (p.sign[i] ? mu + a : mu - a);
      ASSERT_EQ(std::memcmp(&out[i], &want, 4), 0) << r << " " << c;
    }
}

TEST(PbllmFormat, BitsPerWeightCountEveryStoredByteAndPickTheSmallerMask) {
  std::mt19937 rng(2);
  for (double frac : {0.0, 0.05, 0.1, 1.0 / 7, 0.5, 1.0})
    for (int64_t gs : {int64_t(32), int64_t(128), int64_t(256)}) {
      const test::RandomPbllm p = test::random_pbllm(6, 512, gs, frac, rng);
      const Stored s = stored_tensors(*p.w);
      double bytes = 0;
      for (const auto& [suffix, t] : s) bytes += double(t.nbytes);
      const double n = 6.0 * 512, nnz = double(p.w->nnz), G = 512.0 / double(gs);
      EXPECT_DOUBLE_EQ(pbllm_format().bits_per_weight(*p.w), bytes * 8 / n) << frac << " g" << gs;
      const bool bitmap = n <= 8 * nnz + 16 * 6 * G;
      EXPECT_EQ(s.count("pb_bitmap"), bitmap ? 1u : 0u) << frac << " g" << gs;
      EXPECT_EQ(s.count("pb_pos") + s.count("pb_counts"), bitmap ? 0u : 2u);
      EXPECT_NEAR(pbllm_format().bits_per_weight(*p.w),
                  1 + std::min(1.0, (8 * nnz + 16 * 6 * G) / n) + 8 * nnz / n + 32 / double(gs) + 64.0 / 512,
                  1e-12);
    }
  // 10% salient at g128: 1 (signs) + 0.8 + 0.125 (positions, counts) + 0.8 (values) + 0.25 + 0.125.
  std::vector<uint8_t> sal(4 * 1280, 0), zero(4 * 1280, 0);
  for (size_t i = 0; i < sal.size(); i += 10) sal[i] = 1;
  std::vector<float> mu(40, 0.5f), S(4, 1.0f);
  auto w = make_pbllm(4, 1280, 128, sal.data(), zero.data(), zero.data(), mu.data(), mu.data(), S.data(),
                      S.data());
  EXPECT_DOUBLE_EQ(w->bits_per_weight(), 1 + 0.8 + 0.125 + 0.8 + 0.25 + 64.0 / 1280);
}

TEST(PbllmFormat, TensorsReadBackBitwiseInBothEncodingsAndMisaligned) {
  std::mt19937 rng(3);
  for (double frac : {0.05, 0.3})
    for (bool misalign : {false, true}) {
      const test::RandomPbllm p = test::random_pbllm(9, 256, 128, frac, rng);
      Stored s = stored_tensors(*p.w);
      std::vector<std::vector<uint8_t>> odd;
      if (misalign)
        for (auto& [k, t] : s) {
          odd.emplace_back(t.nbytes + 1);
          std::memcpy(odd.back().data() + 1, t.data, t.nbytes);
          t.data = odd.back().data() + 1;
        }
      auto back = load(s, 9, 256);
      const PbllmWeight& b = as_pbllm(*back);
      EXPECT_EQ(b.group_size, 128);
      EXPECT_EQ(b.nnz, p.w->nnz);
      const std::vector<float> x = dequantized(*p.w), y = dequantized(*back);
      EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * 4), 0) << frac << misalign;
      // Saved again, the same bytes.
      const Stored again = stored_tensors(*back);
      ASSERT_EQ(again.size(), s.size());
      for (const auto& [k, t] : s) {
        ASSERT_EQ(again.at(k).nbytes, t.nbytes) << k;
        EXPECT_EQ(std::memcmp(again.at(k).data, t.data, t.nbytes), 0) << k;
      }
    }
}

TEST(PbllmFormat, MalformedTensorsGiveOneLineErrors) {
  std::mt19937 rng(4);
  const test::RandomPbllm lo = test::random_pbllm(4, 128, 64, 0.05, rng);  // position list
  const test::RandomPbllm hi = test::random_pbllm(4, 128, 64, 0.4, rng);   // bitmap
  const Stored ok = stored_tensors(*lo.w), okb = stored_tensors(*hi.w);
  ASSERT_TRUE(ok.count("pb_pos") && okb.count("pb_bitmap"));
  auto error = [&](const Stored& s, int64_t rows = 4, int64_t cols = 128) {
    return test::error_of([&] { load(s, rows, cols); });
  };
  EXPECT_EQ(error(ok), "(no error)");
  EXPECT_EQ(error(okb), "(no error)");
  auto drop = [](Stored s, const char* k) {
    s.erase(k);
    return s;
  };
  EXPECT_EQ(error(drop(ok, "pb_values")),
            "f.safetensors: L.pb_values: missing (the pbllm format needs pb_signs, pb_binpar, pb_rowpar, "
            "pb_values and pb_bitmap or pb_pos + pb_counts)");
  EXPECT_EQ(error(drop(ok, "pb_counts")),
            "f.safetensors: L.pb_counts: missing (pb_pos and pb_counts go together)");
  EXPECT_EQ(error(drop(drop(ok, "pb_counts"), "pb_pos")),
            "f.safetensors: L: pbllm needs either pb_bitmap or both pb_pos and pb_counts, not neither");
  Stored both = ok;
  both["pb_bitmap"] = okb.at("pb_bitmap");
  EXPECT_EQ(
      error(both),
      "f.safetensors: L: pbllm needs either pb_bitmap or both pb_pos and pb_counts, not both encodings");
  EXPECT_EQ(
      error(ok, 4, 96),  // 2 groups of 48 columns
      "f.safetensors: L.pb_binpar: pbllm group size 48 must be a multiple of 32, at most 256, dividing the "
      "96 input columns");
  EXPECT_EQ(error(ok, 4, 100),
            "f.safetensors: L: pbllm needs a shape (rows, cols) with cols a multiple of 32, not (4, 100)");
  EXPECT_EQ(error(ok, 5), "f.safetensors: L.pb_signs is U8 (4, 16), expected U8 (5, 16)");
  Stored s = ok;
  s["pb_binpar"].shape = {8, 2};  // as many values, but the rows disagree
  EXPECT_EQ(error(s), "f.safetensors: L.pb_binpar is F16 (8, 2), expected F16 (4, 2)");
  s = ok;
  s["pb_binpar"].shape = {2, 16};  // 8 groups of 16 columns
  EXPECT_EQ(
      error(s, 2),
      "f.safetensors: L.pb_binpar: pbllm group size 16 must be a multiple of 32, at most 256, dividing the "
      "128 input columns");
  // Inconsistent mask data: counts that do not add up, positions out of order, a sign bit at a salient
  // position, a bitmap with too many ones.
  std::vector<uint16_t> counts(8);
  std::memcpy(counts.data(), ok.at("pb_counts").data, 16);
  s = ok;
  counts[0] += 1;
  s["pb_counts"].data = counts.data();
  EXPECT_NE(error(s).find("f.safetensors: L.pb_"), std::string::npos) << error(s);
  counts[0] = 65535;
  EXPECT_EQ(error(s).rfind("f.safetensors: L.pb_counts: row 0 group 0 claims 65535 salient weights", 0), 0u)
      << error(s);
  const int64_t nnz = lo.w->nnz;
  ASSERT_GE(nnz, 2);
  std::vector<uint8_t> pos(lo.w->pos, lo.w->pos + nnz);
  s = ok;
  std::swap(pos[0], pos[1]);
  s["pb_pos"].data = pos.data();
  if (lo.w->counts[0] >= 2)
    EXPECT_EQ(error(s).rfind("f.safetensors: L.pb_pos: entry 1 (row 0 group 0)", 0), 0u) << error(s);
  std::vector<uint8_t> signs(lo.w->signs, lo.w->signs + 4 * 16);
  int64_t g0 = 0;  // the first salient weight of row 0 is in group g0
  while (lo.w->counts[g0] == 0) ++g0;
  const int64_t col = g0 * 64 + lo.w->pos[0];
  signs[size_t(col / 8)] |= uint8_t(1u << (col % 8));
  s = ok;
  s["pb_signs"].data = signs.data();
  EXPECT_EQ(error(s),
            fmt::format("f.safetensors: L.pb_signs: the sign bit of salient weight (row 0, column {}) is set",
                        col));
  std::vector<uint8_t> bm(static_cast<const uint8_t*>(okb.at("pb_bitmap").data),
                          static_cast<const uint8_t*>(okb.at("pb_bitmap").data) + 64);
  s = okb;
  size_t byte = 0;
  while (bm[byte] == 0xFF) ++byte;
  bm[byte] = 0xFF;
  s["pb_bitmap"].data = bm.data();
  const std::string e = error(s);
  EXPECT_TRUE(e.rfind("f.safetensors: L.pb_signs: a sign bit is set at a salient position", 0) == 0 ||
              e.rfind("f.safetensors: L.pb_bitmap marks", 0) == 0)
      << e;
  s = ok;
  s["pb_values"].shape = {nnz, 1};
  EXPECT_EQ(error(s), fmt::format("f.safetensors: L.pb_values is U8 ({}, 1), expected U8 (nnz)", nnz));
}

}  // namespace
}  // namespace lowbit

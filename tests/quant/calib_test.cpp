// Calibration windows and the per-site Hessian accumulation.
#include "quant/calib.h"

#include <gtest/gtest.h>

#include <fstream>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/synth.h"
#include "test_util.h"

namespace lowbit {
namespace {

TEST(Calib, WindowStartsAreDeterministicAndInRange) {
  const auto a = sample_window_starts(1000, 64, 100, 0), b = sample_window_starts(1000, 64, 100, 0);
  const auto c = sample_window_starts(1000, 64, 100, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (int64_t s : a) EXPECT_TRUE(s >= 0 && s <= 1000 - 100 - 1) << s;
  // Exactly L + 1 tokens leaves one start, 0 (GPTQ's randint(0, n − L − 1)).
  for (int64_t s : sample_window_starts(101, 5, 100, 7)) EXPECT_EQ(s, 0);
  // Both ends of the range are reachable.
  const auto many = sample_window_starts(12, 400, 10, 3);
  EXPECT_EQ(*std::min_element(many.begin(), many.end()), 0);
  EXPECT_EQ(*std::max_element(many.begin(), many.end()), 1);
}

TEST(Calib, WindowsAreSlicesOfTheTokenStreamWithBos) {
  const std::string dir = test::temp_dir("calib");
  const std::string text = test::random_text(500, 1);
  test::write_bytes(dir + "/c.txt", text);
  test::ByteTokenizer tok(64);
  const CalibSet c = load_calibration(tok, dir + "/c.txt", 8, 32, 5);
  const std::vector<int32_t> ids = tok.encode_with_bos(text);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(c.stream_tokens, 501);
  EXPECT_EQ(c.starts, sample_window_starts(501, 8, 32, 5));
  ASSERT_EQ(c.tokens.size(), 8u * 32);
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 32; ++j)
      ASSERT_EQ(c.tokens[size_t(i * 32 + j)], ids[size_t(c.starts[size_t(i)] + j)]);
  EXPECT_EQ(c.sha256.size(), 64u);
}

TEST(Calib, TooShortTextIsAClearError) {
  const std::string dir = test::temp_dir("calib");
  test::write_bytes(dir + "/short.txt", "abc");
  test::ByteTokenizer tok(64);
  try {
    load_calibration(tok, dir + "/short.txt", 4, 16, 0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              dir + "/short.txt: calibration text has 4 tokens, fewer than seqlen + 1 = 17");
  }
  EXPECT_THROW(load_calibration(tok, dir + "/missing.txt", 4, 16, 0), Error);
}

// H = 2/N Σ xxᵀ at each site, against a double-precision sum of the activations the block shows an observer.
TEST(Calib, HessianObserverAccumulatesTwoXtXOverN) {
  auto model = test::make_synth_model({});
  CalibSet cs;
  cs.nsamples = 3, cs.seqlen = 20;
  for (int i = 0; i < 60; ++i) cs.tokens.push_back(2 + (i * 7) % 60);
  Activations a = embed_windows(*model, cs, 20);
  struct All : BlockObserver {
    std::vector<std::vector<float>> x{4};
    std::vector<int64_t> cols = std::vector<int64_t>(4);
    void observe(int, InputSite s, const float* p, int64_t n, int64_t c) override {
      x[size_t(int(s))].insert(x[size_t(int(s))].end(), p, p + n * c);
      cols[size_t(int(s))] = c;
    }
  } all;
  run_block(*model, 1, a, &all, false);
  HessianObserver h({InputSite::OIn, InputSite::DownIn});
  run_block(*model, 1, a, &h, false);
  EXPECT_EQ(h.tokens(InputSite::DownIn), 60);
  for (InputSite s : {InputSite::OIn, InputSite::DownIn}) {
    const auto& x = all.x[size_t(int(s))];
    const int64_t c = all.cols[size_t(int(s))], n = int64_t(x.size()) / c;
    const std::vector<float> H = h.hessian(s);
    ASSERT_EQ(H.size(), size_t(c * c));
    for (int64_t i = 0; i < c; ++i)
      for (int64_t j = 0; j < c; ++j) {
        double want = 0, mag = 0;
        for (int64_t t = 0; t < n; ++t) {
          want += double(x[size_t(t * c + i)]) * x[size_t(t * c + j)];
          mag += std::fabs(double(x[size_t(t * c + i)]) * x[size_t(t * c + j)]);
        }
        // fp32 sums of n = 60 terms: |error| ≤ γ_60 Σ|terms| (Higham §3.1), ×2/n as the result.
        ASSERT_NEAR(H[size_t(i * c + j)], 2 * want / double(n), 2 * 60 * 6e-8 * mag * 2 / double(n) + 1e-30);
      }
  }
  // Sites before the wanted ones are not accumulated; the block stopped after DownIn's observation anyway.
  EXPECT_EQ(h.tokens(InputSite::AttnIn), 0);
  // take_hessian moves the same matrix out and forgets the site.
  const std::vector<float> copy = h.hessian(InputSite::DownIn);
  EXPECT_EQ(h.take_hessian(InputSite::DownIn), copy);
  EXPECT_EQ(h.tokens(InputSite::DownIn), 0);
}

TEST(Calib, RunBlockUpdatesInPlaceOnlyWhenAsked) {
  auto model = test::make_synth_model({});
  CalibSet cs;
  cs.nsamples = 2, cs.seqlen = 8;
  for (int i = 0; i < 16; ++i) cs.tokens.push_back(2 + i);
  Activations a = embed_windows(*model, cs, 8);
  const std::vector<float> x0 = a.all();
  run_block(*model, 0, a, nullptr, false);
  EXPECT_EQ(a.all(), x0);
  run_block(*model, 0, a, nullptr, true);
  EXPECT_NE(a.all(), x0);
  // Same as the model's own forward of each window through block 0.
  Activations b = embed_windows(*model, cs, 8);
  KVCache cache = model->new_cache(8);
  std::vector<float> xb(b.window_size()), xa(a.window_size());
  b.load(1, xb.data());
  model->block_forward(0, xb.data(), 8, cache);
  a.load(1, xa.data());
  EXPECT_EQ(xa, xb);
}

// f32 in RAM and f32 spilled to disk hold the same bits through embedding and a block; bf16 holds exactly the
// bf16 rounding of what the block computes from its (rounded) inputs.
TEST(Calib, ActivationStorages) {
  auto model = test::make_synth_model({});
  CalibSet cs;
  cs.nsamples = 3, cs.seqlen = 8;
  for (int i = 0; i < 24; ++i) cs.tokens.push_back(2 + (i * 7) % 50);
  Activations f = embed_windows(*model, cs, 8, ActStorage::F32);
  Activations disk = embed_windows(*model, cs, 8, ActStorage::Disk, test::temp_dir("spill"));
  Activations bf = embed_windows(*model, cs, 8, ActStorage::BF16);
  EXPECT_EQ(disk.all(), f.all());
  const std::vector<float> in_f = f.all(), in_b = bf.all();
  for (size_t i = 0; i < in_f.size(); ++i) ASSERT_EQ(in_b[i], bf16_to_f32(f32_to_bf16(in_f[i]))) << i;

  run_block(*model, 0, f, nullptr, true);
  run_block(*model, 0, disk, nullptr, true);
  EXPECT_EQ(disk.all(), f.all());
  const Activations copy = disk;  // a deep copy into its own file
  run_block(*model, 1, disk, nullptr, true);
  EXPECT_EQ(copy.all(), f.all());
  EXPECT_NE(disk.all(), f.all());

  std::vector<float> want(in_b);
  KVCache cache = model->new_cache(8);
  for (int i = 0; i < 3; ++i) {
    cache.n_past = 0;
    model->block_forward(0, want.data() + size_t(i) * bf.window_size(), 8, cache);
  }
  run_block(*model, 0, bf, nullptr, true);
  const std::vector<float> got = bf.all();
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], bf16_to_f32(f32_to_bf16(want[i]))) << i;

  EXPECT_THROW(parse_act_storage("fp8"), Error);
  EXPECT_THROW(Activations(1, 8, 64, ActStorage::Disk, "/nonexistent-dir"), Error);
}

}  // namespace
}  // namespace lowbit

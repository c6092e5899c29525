#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/json.h"
#include "core/mmap.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "test_util.h"

namespace lowbit {

TEST(Progress, FormatsRatesAndDurations) {
  EXPECT_EQ(format_rate(2151.84, "tok"), "2151.8 tok/s");
  EXPECT_EQ(format_rate(1.0, "layer"), "1.0 layer/s");
  EXPECT_EQ(format_rate(1 / 38.0, "layer"), "38.0 s/layer");  // was "0.0 layer/s" for a slow GPTQ layer
  EXPECT_EQ(format_rate(0, "tok"), "- tok/s");
  EXPECT_EQ(format_duration(42), "0:42");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(NAN), "?");
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(3u << 20), "3.00 MiB");
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::string m(1000000, 'a');
  Sha256 h;  // chunked updates across block boundaries
  for (size_t i = 0; i < m.size(); i += 777) h.update(m.data() + i, std::min<size_t>(777, m.size() - i));
  EXPECT_EQ(h.hex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, SharedDataFileMatchesReadme) {
  // ../shared/README.md gives the sha256 prefix of wiki.test.raw.
  EXPECT_EQ(sha256_file(test::data_path("wikitext-2-raw/wiki.test.raw")).substr(0, 16), "173c87a53759e020");
}

TEST(DType, Bf16RoundTripAndRounding) {
  for (float f : {0.0f, 1.0f, -2.5f, 3.140625f, 65536.0f, std::ldexp(1.0f, -100)})
    EXPECT_EQ(bf16_to_f32(f32_to_bf16(f)), f) << f;
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to even (1.0).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(DType, F16AllValuesRoundTrip) {
  // Every finite half converts to float and back exactly; this covers subnormals and the exponent edges.
  for (uint32_t h = 0; h < 65536; ++h) {
    uint16_t x = uint16_t(h);
    float f = f16_to_f32(x);
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), x) << h;
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // rounds to inf
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
}

TEST(DType, F16RoundingMatchesNearestEven) {
  // Against a double-precision oracle: the chosen half must be the nearest, ties to even mantissa.
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-70000.0f, 70000.0f);
  for (int i = 0; i < 200000; ++i) {
    float f = i % 2 ? u(rng) : u(rng) * 1e-4f;
    uint16_t h = f32_to_f16(f);
    double got = f16_to_f32(h);
    if (std::isinf(got)) continue;
    double err = std::fabs(got - double(f));
    for (int d : {-1, 1}) {
      uint16_t n = uint16_t(h + d);
      double alt = f16_to_f32(n);
      if (std::isnan(alt) || std::isinf(alt) || ((n ^ h) & 0x8000)) continue;
      ASSERT_LE(err, std::fabs(alt - double(f))) << f;
    }
  }
}

TEST(Json, MalformedNamesFileAndIsOneLine) {
  std::string dir = test::temp_dir("json");
  test::write_bytes(dir + "/bad.json", "{\"a\": 1,,}");
  try {
    parse_json_file(dir + "/bad.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("bad.json"), std::string::npos) << m;
    EXPECT_NE(m.find("malformed JSON"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

}  // namespace lowbit

namespace lowbit {
namespace {

// Pages of a mapped file can be dropped and read back unchanged; anything else is left alone.
TEST(MappedFile, ReleasePagesKeepsTheDataAndIgnoresOtherMemory) {
  const std::string path = test::temp_dir("mmap") + "/f.bin";
  std::string bytes(5 * 4096 + 123, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = char(i * 131 % 251);
  test::write_bytes(path, bytes);
  MappedFile f(path);
  const std::string before(reinterpret_cast<const char*>(f.data()), f.size());
  EXPECT_TRUE(release_mapped_pages(f.data() + 100, f.size() - 200));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data()), f.size()), bytes);
  EXPECT_EQ(before, bytes);
  EXPECT_FALSE(release_mapped_pages(f.data() + 100, f.size()));  // runs past the end of the mapping
  std::vector<char> anon(bytes.begin(), bytes.end());
  EXPECT_FALSE(release_mapped_pages(anon.data(), anon.size()));
  EXPECT_EQ(std::string(anon.begin(), anon.end()), bytes);
  // The read-pattern advice works on the same ranges and never changes what is read.
  EXPECT_TRUE(expect_random_reads(f.data(), f.size(), true));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data()), f.size()), bytes);
  EXPECT_TRUE(expect_random_reads(f.data(), f.size(), false));
  EXPECT_FALSE(expect_random_reads(f.data() + 1, f.size(), true));
  EXPECT_FALSE(expect_random_reads(anon.data(), anon.size(), true));
}

// Bytes handed to a scratch file come back unchanged through its mappings, which outlive the file object
// and whose pages can be dropped and faulted back; plain write/read round-trips at any offset.
TEST(ScratchFile, MappingsAndReadsReturnWhatWasWritten) {
  std::vector<std::shared_ptr<const uint8_t>> maps;
  std::vector<std::string> want;
  {
    ScratchFile f(test::temp_dir("scratch"), 100);
    std::string z(100, 'x');
    f.read(0, z.data(), z.size());
    EXPECT_EQ(z, std::string(100, '\0'));  // the initial size reads as zeros
    for (size_t n : {1u, 4096u, 5000u, 3u}) {
      std::string b(n, '\0');
      for (size_t i = 0; i < n; ++i) b[i] = char((i * 7 + n) % 251);
      maps.push_back(f.append_mapped(b.data(), b.size()));
      want.push_back(b);
    }
    const std::string w = "written at 37";
    f.write(37, w.data(), w.size());
    std::string r(w.size(), '\0');
    f.read(37, r.data(), r.size());
    EXPECT_EQ(r, w);
    EXPECT_THROW(f.read(1u << 30, r.data(), r.size()), Error);  // past the end
  }
  for (size_t i = 0; i < maps.size(); ++i) {
    const char* p = reinterpret_cast<const char*>(maps[i].get());
    EXPECT_EQ(std::string(p, want[i].size()), want[i]) << i;
    EXPECT_TRUE(release_mapped_pages(maps[i].get(), want[i].size()));
    EXPECT_EQ(std::string(p, want[i].size()), want[i]) << i;
  }
  EXPECT_THROW(ScratchFile("/nonexistent-dir/for/lowbit"), Error);
}

}  // namespace
}  // namespace lowbit

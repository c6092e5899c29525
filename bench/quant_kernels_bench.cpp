// Microbenchmarks of the packed quantized kernels vs the bf16 dense ones:
//   decode GEMV (n = 1) of 2048x2048 and 8192x2048 weights at 2/3/4/8 bits, group 128, reported as GB/s of
//   the weight bytes actually read (codes + fp16 scales + uint8 zero-points; bf16: 2 bytes per weight), and
//   the prefill path (n = 2048: dequantized panels + sgemm) in GFLOP/s; the same for NF4 (formats/nf4.h:
//   4-bit codes, double-quantized absmax, optionally ICQ's τ), whose GEMV looks codes up in a per-block
//   table; and the same for DB-LLM's dual binarization (formats/dualbin.h: two bit planes, two fp16 scales
//   per group of 128, 2.25 bits per weight), whose GEMV adds x under the plane bits, to compare with the
//   2-bit affine GEMV (w2g128: 2.19 bits) and the 4-bit one (w4g128) at the same shapes.
// The label is the Highway target the kernels dispatched to.
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <vector>

#include "kernels/affine_matmul.h"
#include "kernels/dense.h"
#include "kernels/dualbin_matmul.h"
#include "kernels/nf4_matmul.h"

using namespace lowbit;

namespace {

struct Packed {
  std::vector<uint8_t> codes, zeros;
  std::vector<uint16_t> scales;
  AffineWeight w;
  size_t bytes() const { return codes.size() + zeros.size() + scales.size() * 2; }
};

std::unique_ptr<Packed> random_packed(int bits, int64_t rows, int64_t cols, int64_t group) {
  auto p = std::make_unique<Packed>();
  std::mt19937 rng(1);
  p->w.bits = bits, p->w.rows = rows, p->w.cols = cols, p->w.group_size = group;
  p->codes.resize(p->w.row_bytes() * size_t(rows));
  for (auto& b : p->codes) b = uint8_t(rng());  // every bit pattern is a valid code sequence
  const size_t ng = size_t(rows * (cols / group));
  p->scales.resize(ng);
  p->zeros.resize(ng);
  std::uniform_real_distribution<float> u(0.001f, 0.01f);
  for (auto& s : p->scales) s = f32_to_f16(u(rng));
  for (auto& z : p->zeros) z = uint8_t(rng() & ((1u << bits) - 1));
  p->w.codes = p->codes.data(), p->w.scales = p->scales.data(), p->w.zeros = p->zeros.data();
  return p;
}

std::vector<uint16_t> random_bf16(size_t n) {
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0, 1);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = f32_to_bf16(nd(rng));
  return v;
}

std::vector<float> random_x(size_t n) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

void BM_QuantGemv(benchmark::State& st) {
  const int bits = int(st.range(0));
  const int64_t rows = st.range(1), cols = st.range(2), n = st.range(3);
  const auto p = random_packed(bits, rows, cols, 128);
  const auto x = random_x(size_t(n * cols));
  std::vector<float> y(size_t(n * rows));
  for (auto _ : st) {
    affine_matmul(p->w, x.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(p->bytes()));
  st.SetLabel(simd_target_name());
}
BENCHMARK(BM_QuantGemv)
    ->ArgNames({"bits", "rows", "cols", "n"})
    ->Args({2, 2048, 2048, 1})
    ->Args({3, 2048, 2048, 1})
    ->Args({4, 2048, 2048, 1})
    ->Args({8, 2048, 2048, 1})
    ->Args({2, 8192, 2048, 1})
    ->Args({3, 8192, 2048, 1})
    ->Args({4, 8192, 2048, 1})
    ->Args({8, 8192, 2048, 1})
    ->Args({2, 8192, 2048, 4})
    ->Args({4, 8192, 2048, 4})
    ->UseRealTime();

void BM_DenseGemvBf16(benchmark::State& st) {
  const int64_t rows = st.range(0), cols = st.range(1);
  const auto h = random_bf16(size_t(rows * cols));
  const auto x = random_x(size_t(cols));
  std::vector<float> y(static_cast<size_t>(rows));
  const DenseWeight w{DType::BF16, h.data(), rows, cols};
  for (auto _ : st) {
    dense_matmul(w, x.data(), 1, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * rows * cols * 2);
  st.SetLabel(simd_target_name());
}
BENCHMARK(BM_DenseGemvBf16)
    ->ArgNames({"rows", "cols"})
    ->Args({2048, 2048})
    ->Args({8192, 2048})
    ->UseRealTime();

void BM_QuantPrefill(benchmark::State& st) {
  const int bits = int(st.range(0));
  const int64_t rows = st.range(1), cols = st.range(2), n = st.range(3);
  const auto p = random_packed(bits, rows, cols, 128);
  const auto x = random_x(size_t(n * cols));
  std::vector<float> y(size_t(n * rows));
  for (auto _ : st) {
    affine_matmul(p->w, x.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter(double(st.iterations()) * 2.0 * double(n * rows * cols) / 1e9,
                                              benchmark::Counter::kIsRate);
  st.SetLabel(simd_target_name());
}
BENCHMARK(BM_QuantPrefill)
    ->ArgNames({"bits", "rows", "cols", "n"})
    ->Args({4, 2048, 2048, 2048})
    ->Args({3, 2048, 2048, 2048})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_DensePrefillBf16(benchmark::State& st) {
  const int64_t rows = st.range(0), cols = st.range(1), n = st.range(2);
  const auto h = random_bf16(size_t(rows * cols));
  const auto x = random_x(size_t(n * cols));
  std::vector<float> y(size_t(n * rows));
  const DenseWeight w{DType::BF16, h.data(), rows, cols};
  for (auto _ : st) {
    dense_matmul(w, x.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter(double(st.iterations()) * 2.0 * double(n * rows * cols) / 1e9,
                                              benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DensePrefillBf16)
    ->ArgNames({"rows", "cols", "n"})
    ->Args({2048, 2048, 2048})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Dequantization alone (the prefill path's overhead on top of sgemm), GB/s of f32 written.
void BM_DequantRows(benchmark::State& st) {
  const int bits = int(st.range(0));
  const int64_t rows = 2048, cols = 2048;
  const auto p = random_packed(bits, rows, cols, 128);
  std::vector<float> out(size_t(rows * cols));
  for (auto _ : st) {
    affine_dequantize_rows(p->w, 0, rows, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * rows * cols * 4);
  st.SetLabel(simd_target_name());
}
BENCHMARK(BM_DequantRows)->ArgName("bits")->Arg(3)->Arg(4)->UseRealTime();

struct PackedNf4 {
  std::vector<uint8_t> codes, absmax_q, tau_q;
  std::vector<float> absmax2, tau2;
  Nf4Weight w;
  size_t bytes() const {
    return codes.size() + absmax_q.size() + tau_q.size() + (absmax2.size() + tau2.size()) * 4 + 4;
  }
};

std::unique_ptr<PackedNf4> random_nf4(int64_t rows, int64_t cols, bool icq) {
  auto p = std::make_unique<PackedNf4>();
  std::mt19937 rng(4);
  const int64_t nb = rows * cols / 64, ns = (nb + 255) / 256;
  p->codes.resize(size_t(rows * cols / 2));
  for (auto& b : p->codes) b = uint8_t(rng());
  p->absmax_q.resize(size_t(nb));
  for (auto& b : p->absmax_q) b = uint8_t(rng());
  p->absmax2.assign(size_t(ns), 0.01f);
  p->w.rows = rows, p->w.cols = cols;
  p->w.codes = p->codes.data(), p->w.absmax_q = p->absmax_q.data(), p->w.absmax2 = p->absmax2.data();
  p->w.absmax_offset = 0.02f;
  if (icq) {
    p->tau_q.resize(size_t(nb));
    for (auto& b : p->tau_q) b = uint8_t(rng());
    p->tau2.assign(size_t(ns), 0.001f);
    p->w.tau_q = p->tau_q.data(), p->w.tau2 = p->tau2.data();
  }
  return p;
}

void BM_Nf4Matmul(benchmark::State& st) {
  const int64_t rows = st.range(0), cols = st.range(1), n = st.range(2);
  const auto p = random_nf4(rows, cols, st.range(3) != 0);
  const auto x = random_x(size_t(n * cols));
  std::vector<float> y(size_t(n * rows));
  for (auto _ : st) {
    nf4_matmul(p->w, x.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  if (n <= 4)
    st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(p->bytes()));
  else
    st.counters["GFLOP/s"] = benchmark::Counter(double(st.iterations()) * 2.0 * double(n * rows * cols) / 1e9,
                                                benchmark::Counter::kIsRate);
  st.SetLabel(simd_target_name());
}
BENCHMARK(BM_Nf4Matmul)
    ->ArgNames({"rows", "cols", "n", "icq"})
    ->Args({2048, 2048, 1, 0})
    ->Args({8192, 2048, 1, 0})
    ->Args({8192, 2048, 1, 1})
    ->Args({8192, 2048, 4, 0})
    ->Args({2048, 2048, 2048, 0})
    ->UseRealTime();

void BM_Nf4DequantRows(benchmark::State& st) {
  const int64_t rows = 2048, cols = 2048;
  const auto p = random_nf4(rows, cols, st.range(0) != 0);
  std::vector<float> out(size_t(rows * cols));
  for (auto _ : st) {
    nf4_dequantize_rows(p->w, 0, rows, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * rows * cols * 4);
  st.SetLabel(simd_target_name());
}
BENCHMARK(BM_Nf4DequantRows)->ArgName("icq")->Arg(0)->Arg(1)->UseRealTime();

struct PackedDualBin {
  std::vector<uint8_t> plane1, plane2;
  std::vector<uint16_t> scales;
  DualBinWeight w;
  size_t bytes() const { return plane1.size() + plane2.size() + scales.size() * 2; }
};

std::unique_ptr<PackedDualBin> random_dualbin(int64_t rows, int64_t cols, int64_t group) {
  auto p = std::make_unique<PackedDualBin>();
  std::mt19937 rng(5);
  p->plane1.resize(size_t(rows * cols / 8));
  p->plane2.resize(size_t(rows * cols / 8));
  for (auto& b : p->plane1) b = uint8_t(rng());
  for (auto& b : p->plane2) b = uint8_t(rng());
  p->scales.resize(size_t(2 * rows * (cols / group)));
  std::uniform_real_distribution<float> u(0.001f, 0.01f);
  for (size_t i = 0; i < p->scales.size(); ++i) p->scales[i] = f32_to_f16(i % 2 ? -u(rng) : 2 * u(rng));
  p->w.rows = rows, p->w.cols = cols, p->w.group_size = group;
  p->w.plane1 = p->plane1.data(), p->w.plane2 = p->plane2.data(), p->w.scales = p->scales.data();
  return p;
}

void BM_DualBinMatmul(benchmark::State& st) {
  const int64_t rows = st.range(0), cols = st.range(1), n = st.range(2);
  const auto p = random_dualbin(rows, cols, 128);
  const auto x = random_x(size_t(n * cols));
  std::vector<float> y(size_t(n * rows));
  for (auto _ : st) {
    dualbin_matmul(p->w, x.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  if (n <= 4)
    st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(p->bytes()));
  else
    st.counters["GFLOP/s"] = benchmark::Counter(double(st.iterations()) * 2.0 * double(n * rows * cols) / 1e9,
                                                benchmark::Counter::kIsRate);
  st.SetLabel(simd_target_name());
}
BENCHMARK(BM_DualBinMatmul)
    ->ArgNames({"rows", "cols", "n"})
    ->Args({2048, 2048, 1})
    ->Args({8192, 2048, 1})
    ->Args({8192, 2048, 4})
    ->Args({2048, 2048, 2048})
    ->UseRealTime();

void BM_DualBinDequantRows(benchmark::State& st) {
  const int64_t rows = 2048, cols = 2048;
  const auto p = random_dualbin(rows, cols, 128);
  std::vector<float> out(size_t(rows * cols));
  for (auto _ : st) {
    dualbin_dequantize_rows(p->w, 0, rows, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * rows * cols * 4);
  st.SetLabel(simd_target_name());
}
BENCHMARK(BM_DualBinDequantRows)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();

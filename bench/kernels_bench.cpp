// Microbenchmarks of the dense kernels: GEMV (decode) per dtype and the widened-panel GEMM (prefill).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/dense.h"

using namespace lowbit;

static std::vector<uint16_t> random_half(size_t n, DType t) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0, 1);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = t == DType::BF16 ? f32_to_bf16(nd(rng)) : f32_to_f16(nd(rng));
  return v;
}

static void BM_Gemv(benchmark::State& st) {
  const DType t = DType(st.range(0));
  const int64_t rows = st.range(1), cols = st.range(2);
  std::vector<uint16_t> h;
  std::vector<float> f;
  const void* data;
  if (t == DType::F32) {
    f.assign(size_t(rows * cols), 0.5f);
    data = f.data();
  } else {
    h = random_half(size_t(rows * cols), t);
    data = h.data();
  }
  std::vector<float> x(static_cast<size_t>(cols), 1.0f), y(static_cast<size_t>(rows));
  DenseWeight w{t, data, rows, cols};
  for (auto _ : st) {
    dense_matmul(w, x.data(), 1, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * rows * cols * int64_t(dtype_size(t)));
  st.SetLabel(simd_target_name());
}
BENCHMARK(BM_Gemv)
    ->Args({int(DType::F32), 2048, 2048})
    ->Args({int(DType::BF16), 2048, 2048})
    ->Args({int(DType::F16), 2048, 2048})
    ->Args({int(DType::BF16), 8192, 2048})
    ->UseRealTime();

static void BM_GemmBf16(benchmark::State& st) {
  const int64_t n = st.range(0), rows = st.range(1), cols = st.range(2);
  auto h = random_half(size_t(rows * cols), DType::BF16);
  std::vector<float> x(size_t(n * cols), 0.25f), y(size_t(n * rows));
  DenseWeight w{DType::BF16, h.data(), rows, cols};
  for (auto _ : st) {
    dense_matmul(w, x.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GFLOP/s"] =
      benchmark::Counter(double(st.iterations()) * 2.0 * n * rows * cols / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_GemmBf16)->Args({2048, 1024, 384})->Args({2048, 32000, 384})->UseRealTime();

BENCHMARK_MAIN();

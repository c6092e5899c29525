// Shared measurements for the end-to-end benchmarks: OpenBLAS sgemm peak and memory copy bandwidth.
#pragma once
#include <cblas.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "core/blas.h"
#include "core/sys.h"

namespace lowbit::bench {

// Best sgemm GFLOP/s over a few shapes, including the given (m, n, k), measured now in this process.
inline double sgemm_peak_gflops(int m, int n, int k) {
  double best = 0;
  const std::array<std::array<int, 3>, 3> shapes = {{{m, n, k}, {2048, 2048, 2048}, {2048, 4096, 1024}}};
  for (auto [M, N, K] : shapes) {
    std::vector<float> a(size_t(M) * K, 0.5f), b(size_t(N) * K, 0.25f), c(size_t(M) * N);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a.data(), K, b.data(), K, 0, c.data(),
                N);
    for (int rep = 0; rep < 3; ++rep) {
      Timer t;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a.data(), K, b.data(), K, 0, c.data(),
                  N);
      best = std::max(best, 2.0 * M * N * K / t.seconds() / 1e9);
    }
  }
  return best;
}

// Multithreaded memcpy bandwidth in GB/s (bytes read + written / s) over a buffer far larger than the caches.
inline double copy_bandwidth_gbs(size_t bytes = size_t(1) << 30) {
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  double best = 0;
  for (int rep = 0; rep < 4; ++rep) {
    Timer t;
    const int nt = num_threads();
#pragma omp parallel for schedule(static)
    for (int i = 0; i < nt; ++i) {
      size_t chunk = bytes / size_t(nt), off = chunk * size_t(i);
      std::memcpy(dst.data() + off, src.data() + off, i == nt - 1 ? bytes - off : chunk);
    }
    best = std::max(best, 2.0 * double(bytes) / t.seconds() / 1e9);
  }
  return best;
}

}  // namespace lowbit::bench

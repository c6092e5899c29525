// Highway SIMD bodies for dense.h, compiled once per target and dispatched at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/dense_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "kernels/dense.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;

// Loads Lanes(df) weights of type T starting at p and widens them to f32.
template <typename T>
HWY_INLINE hn::Vec<DF> LoadWide(DF df, const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return hn::LoadU(df, p);
  } else {
    const hn::Rebind<T, DF> dh;
    return hn::PromoteTo(df, hn::LoadU(dh, p));
  }
}

template <typename T>
HWY_INLINE float ScalarWide(const T* p, size_t i) {
  if constexpr (std::is_same_v<T, float>) {
    return p[i];
  } else if constexpr (std::is_same_v<T, hwy::bfloat16_t>) {
    return bf16_to_f32(reinterpret_cast<const uint16_t*>(p)[i]);
  } else {
    return f16_to_f32(reinterpret_cast<const uint16_t*>(p)[i]);
  }
}

// Σ w[i]·x[i] with four independent accumulators (hides FMA latency); the tail is scalar.
template <typename T>
HWY_INLINE float DotT(const T* HWY_RESTRICT w, const float* HWY_RESTRICT x, size_t n) {
  const DF df;
  const size_t N = hn::Lanes(df);
  auto a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
  size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    a0 = hn::MulAdd(LoadWide(df, w + i), hn::LoadU(df, x + i), a0);
    a1 = hn::MulAdd(LoadWide(df, w + i + N), hn::LoadU(df, x + i + N), a1);
    a2 = hn::MulAdd(LoadWide(df, w + i + 2 * N), hn::LoadU(df, x + i + 2 * N), a2);
    a3 = hn::MulAdd(LoadWide(df, w + i + 3 * N), hn::LoadU(df, x + i + 3 * N), a3);
  }
  for (; i + N <= n; i += N) a0 = hn::MulAdd(LoadWide(df, w + i), hn::LoadU(df, x + i), a0);
  float s = hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
  for (; i < n; ++i) s += ScalarWide(w, i) * x[i];
  return s;
}

float DotRow(DType t, const void* row, const float* x, size_t n) {
  switch (t) {
    case DType::F32:
      return DotT(static_cast<const float*>(row), x, n);
    case DType::BF16:
      return DotT(static_cast<const hwy::bfloat16_t*>(row), x, n);
    case DType::F16:
      return DotT(static_cast<const hwy::float16_t*>(row), x, n);
    default:
      return 0;  // callers check the dtype
  }
}

template <typename T>
HWY_INLINE void WidenT(const T* HWY_RESTRICT src, float* HWY_RESTRICT dst, size_t n) {
  const DF df;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(LoadWide(df, src + i), df, dst + i);
  for (; i < n; ++i) dst[i] = ScalarWide(src, i);
}

void Widen(DType t, const void* src, float* dst, size_t n) {
  switch (t) {
    case DType::F32:
      WidenT(static_cast<const float*>(src), dst, n);
      return;
    case DType::BF16:
      WidenT(static_cast<const hwy::bfloat16_t*>(src), dst, n);
      return;
    case DType::F16:
      WidenT(static_cast<const hwy::float16_t*>(src), dst, n);
      return;
    default:
      return;
  }
}

const char* TargetName() {
  return hwy::TargetName(HWY_TARGET);
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "kernels/ops.h"

namespace lowbit {

HWY_EXPORT(DotRow);
HWY_EXPORT(Widen);
HWY_EXPORT(TargetName);

static void check_dtype(DType t) {
  if (!is_float(t)) fail("dense kernel: unsupported weight dtype {}", dtype_name(t));
}

float dot_row(DType t, const void* row, const float* x, size_t n) {
  check_dtype(t);
  return HWY_DYNAMIC_DISPATCH(DotRow)(t, row, x, n);
}
float dot_f32(const float* a, const float* b, size_t n) {
  return dot_row(DType::F32, a, b, n);
}
void widen_to_f32(DType t, const void* src, float* dst, size_t n) {
  check_dtype(t);
  HWY_DYNAMIC_DISPATCH(Widen)(t, src, dst, n);
}
const char* simd_target_name() {
  return HWY_DYNAMIC_DISPATCH(TargetName)();
}

float dot_row_scalar(DType t, const void* row, const float* x, size_t n) {
  check_dtype(t);
  float s = 0;
  for (size_t i = 0; i < n; ++i) {
    float w;
    to_f32(t, static_cast<const uint8_t*>(row) + i * dtype_size(t), &w, 1);
    s += w * x[i];
  }
  return s;
}

void dense_matmul_scalar(const DenseWeight& w, const float* x, int64_t n, float* y) {
  const size_t es = dtype_size(w.dtype);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < w.rows; ++r)
      y[t * w.rows + r] =
          dot_row_scalar(w.dtype, static_cast<const uint8_t*>(w.data) + size_t(r * w.cols) * es,
                         x + t * w.cols, size_t(w.cols));
}

void gemm_by_panels(int64_t rows, int64_t cols, const float* x, int64_t n, float* y,
                    const std::function<void(int64_t r0, int64_t nr, float* out)>& fill) {
  const int64_t panel = std::max<int64_t>(64, std::min<int64_t>(rows, (int64_t(1) << 22) / cols));
  std::vector<float> buf(size_t(std::min(panel, rows) * cols));
  for (int64_t r0 = 0; r0 < rows; r0 += panel) {
    const int64_t pr = std::min(panel, rows - r0);
    fill(r0, pr, buf.data());
    // y[:, r0:r0+pr] (n, pr) = x (n, cols) · panelᵀ (cols, pr)
    ops::gemm(true, n, pr, cols, 1.0f, x, cols, buf.data(), cols, 0.0f, y + r0, rows);
  }
}

// Below this many tokens the GEMV path wins: it streams the weights once per token without widening them.
static constexpr int64_t kGemvMaxTokens = 4;

void dense_matmul(const DenseWeight& w, const float* x, int64_t n, float* y) {
  check_dtype(w.dtype);
  const size_t es = dtype_size(w.dtype);
  const auto* base = static_cast<const uint8_t*>(w.data);
  if (n <= kGemvMaxTokens) {
    for (int64_t t = 0; t < n; ++t) {
      const float* xt = x + t * w.cols;
      float* yt = y + t * w.rows;
      // Forking threads costs more than a small matrix-vector product (e.g. stories260K's 64x64).
      parallel_rows(
          w.rows,
          [&](int64_t r) {
            yt[r] = HWY_DYNAMIC_DISPATCH(DotRow)(w.dtype, base + size_t(r * w.cols) * es, xt, size_t(w.cols));
          },
          w.rows * w.cols >= (int64_t(1) << 16));
    }
    return;
  }
  if (w.dtype == DType::F32) {
    ops::gemm(true, n, w.rows, w.cols, 1.0f, x, w.cols, static_cast<const float*>(w.data), w.cols, 0.0f, y,
              w.rows);
    return;
  }
  const auto widen = HWY_DYNAMIC_DISPATCH(Widen);
  gemm_by_panels(w.rows, w.cols, x, n, y, [&](int64_t r0, int64_t nr, float* out) {
    parallel_rows(nr, [&](int64_t r) {
      widen(w.dtype, base + size_t((r0 + r) * w.cols) * es, out + r * w.cols, size_t(w.cols));
    });
  });
}

}  // namespace lowbit
#endif  // HWY_ONCE

// Random affine (formats/affine.h) weights for the format, kernel and layout tests: codes, fp16 scales and
// zero-points drawn from one generator, optionally with a GPTQ act-order g_idx. The generated codes are kept
// unpacked too, so a test can compute Ŵ exactly without the decoder under test.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "formats/affine.h"

namespace lowbit::test {

struct RandomAffine {
  std::vector<uint8_t> codes, zeros;
  std::vector<uint16_t> scales;
  std::vector<int32_t> g_idx;
  std::vector<uint32_t> q;  // (rows, cols) the codes, unpacked, as generated
  AffineWeight w;           // views of the vectors above (a moved RandomAffine keeps them valid)
};

// |S| log-uniform in [2⁻¹⁰, 2⁻¹], either sign, one in 16 an fp16 subnormal (exercising the f16 → f32 decode).
inline uint16_t wide_random_scale(std::mt19937& rng) {
  std::uniform_real_distribution<float> mag(-10.0f, -1.0f);  // log2 |S|
  const bool subnormal = rng() % 16 == 0;
  float s = subnormal ? std::ldexp(float(rng() % 1023 + 1), -24) : std::exp2(mag(rng));
  if (rng() % 2) s = -s;
  return f32_to_f16(s);
}

// Zero-points uniform in [zmin, min(zmax, 2^bits − 1)]; act_order: columns quantized in a random order,
// g_idx[c] = (position of c) / gs, as GPTQ's act-order writes it.
inline RandomAffine random_affine(int bits, int64_t rows, int64_t cols, int64_t gs, bool act_order,
                                  std::mt19937& rng,
                                  const std::function<uint16_t(std::mt19937&)>& scale = wide_random_scale,
                                  uint32_t zmin = 0, uint32_t zmax = 255) {
  RandomAffine p;
  const int64_t G = cols / gs;
  const uint32_t maxq = (1u << bits) - 1;
  zmax = std::min(zmax, maxq);
  p.w.bits = bits, p.w.rows = rows, p.w.cols = cols, p.w.group_size = gs;
  const size_t rb = p.w.row_bytes();
  p.codes.assign(rb * size_t(rows), 0);
  p.q.resize(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const uint32_t q = rng() & maxq;
      p.q[size_t(r * cols + c)] = q;
      pack_code(p.codes.data() + size_t(r) * rb, bits, c, q);
    }
  p.scales.resize(size_t(rows * G));
  p.zeros.resize(size_t(rows * G));
  for (auto& s : p.scales) s = scale(rng);
  for (auto& z : p.zeros) z = uint8_t(zmin + rng() % (zmax - zmin + 1));
  if (act_order) {
    std::vector<int32_t> perm(static_cast<size_t>(cols));
    for (int64_t c = 0; c < cols; ++c) perm[size_t(c)] = int32_t(c);
    std::shuffle(perm.begin(), perm.end(), rng);
    p.g_idx.resize(static_cast<size_t>(cols));
    for (int64_t k = 0; k < cols; ++k) p.g_idx[size_t(perm[size_t(k)])] = int32_t(k / gs);
  }
  p.w.codes = p.codes.data(), p.w.scales = p.scales.data(), p.w.zeros = p.zeros.data();
  p.w.g_idx = act_order ? p.g_idx.data() : nullptr;
  return p;
}

}  // namespace lowbit::test

// Random SliM (formats/slim.h) weights for the format and kernel tests: group bit widths from a palette (each
// entry used by some group when there are enough groups, in a shuffled order), random codes, scales of either
// sign log-uniform in [2⁻¹⁰, 2⁻¹] with one in 16 an fp16 subnormal, zero-points anywhere in [0, 2^bits − 1],
// means ~0.02 of either sign with one in ten scaled by 2^±14 (so that μ ± α rounds in f32 and the order of
// slim_value matters) — built by make_slim, with the inputs kept (zeros of 1-bit groups random: make_slim
// must ignore them) so tests can evaluate the definition themselves.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "formats/random_affine.h"
#include "formats/slim.h"

namespace lowbit::test {

struct RandomSlim {
  int64_t rows = 0, cols = 0, gs = 0;
  std::vector<uint8_t> bits;          // (G)
  std::vector<uint8_t> codes, zeros;  // (rows, cols), (rows, G)
  std::vector<float> scales, means;   // (rows, G) as given (make_slim rounds them to fp16)
  std::shared_ptr<SlimWeight> w;
};

inline RandomSlim random_slim(int64_t rows, int64_t cols, int64_t gs, const std::vector<int>& palette,
                              std::mt19937& rng) {
  RandomSlim p;
  p.rows = rows, p.cols = cols, p.gs = gs;
  const int64_t G = cols / gs;
  for (int64_t g = 0; g < G; ++g) p.bits.push_back(uint8_t(palette[size_t(g) % palette.size()]));
  std::shuffle(p.bits.begin(), p.bits.end(), rng);
  std::uniform_real_distribution<double> u(0, 1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  p.codes.resize(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      p.codes[size_t(r * cols + c)] = uint8_t(rng() & ((1u << p.bits[size_t(c / gs)]) - 1));
  for (int64_t i = 0; i < rows * G; ++i) {
    p.scales.push_back(f16_to_f32(wide_random_scale(rng)));
    const int b = p.bits[size_t(i % G)];
    p.zeros.push_back(uint8_t(b == 1 ? rng() % 256 : rng() % (1u << b)));
    float m = 0.02f * nd(rng);
    if (u(rng) < 0.1) m = std::ldexp(m, int(rng() % 29) - 14);
    p.means.push_back(m);
  }
  p.w = make_slim(rows, cols, gs, p.bits.data(), p.codes.data(), p.scales.data(), p.zeros.data(),
                  p.means.data());
  return p;
}

}  // namespace lowbit::test

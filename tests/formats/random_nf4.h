// Random NF4 (formats/nf4.h) weights for the format and kernel tests: random codes and block scales, f32 or
// double-quantized, with or without ICQ's τ, all drawn from one generator. Nothing here quantizes: the
// stored fields are arbitrary valid values, so the decoders are exercised on every code and map index.
#pragma once
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "formats/nf4.h"

namespace lowbit::test {

struct RandomNf4 {
  std::vector<uint8_t> codes, absmax_q, tau_q;
  std::vector<float> absmax, absmax2, tau2;
  Nf4Weight w;  // views of the vectors above (a moved RandomNf4 keeps them valid)
};

// Scales log-uniform in [2⁻¹², 2], offset in [0, 0.1], τ's second-level scale in [0, 0.05].
inline RandomNf4 random_nf4(int64_t rows, int64_t cols, bool double_quant, bool icq, std::mt19937& rng) {
  RandomNf4 p;
  const int64_t nb = rows * cols / kNf4Block, ns = (nb + kNf4SuperBlock - 1) / kNf4SuperBlock;
  std::uniform_real_distribution<float> lg(-12.0f, 1.0f), u(0.0f, 1.0f);
  p.codes.resize(size_t(rows * cols / 2));
  for (uint8_t& c : p.codes) c = uint8_t(rng());
  if (double_quant) {
    p.absmax_q.resize(size_t(nb));
    for (uint8_t& c : p.absmax_q) c = uint8_t(rng());
    p.absmax2.resize(size_t(ns));
    for (float& a : p.absmax2) a = std::exp2(lg(rng));
    p.w.absmax_q = p.absmax_q.data();
    p.w.absmax2 = p.absmax2.data();
    p.w.absmax_offset = 0.1f * u(rng);
  } else {
    p.absmax.resize(size_t(nb));
    for (float& a : p.absmax) a = std::exp2(lg(rng));
    p.w.absmax = p.absmax.data();
  }
  if (icq) {
    p.tau_q.resize(size_t(nb));
    for (uint8_t& c : p.tau_q) c = uint8_t(rng());
    p.tau2.resize(size_t(ns));
    for (float& t : p.tau2) t = 0.05f * u(rng);
    p.w.tau_q = p.tau_q.data();
    p.w.tau2 = p.tau2.data();
  }
  p.w.rows = rows;
  p.w.cols = cols;
  p.w.codes = p.codes.data();
  return p;
}

}  // namespace lowbit::test

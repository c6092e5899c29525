// Random partial-binarization (formats/pbllm.h) weights for the format and kernel tests: a random salient
// mask with a given fraction (per weight, so counts vary across groups; empty and full groups appear at the
// extremes), random signs, 8-bit codes, fp16 μ and α of either sign, and per-row (S, Z) — built by
// make_pbllm, with the inputs kept so tests can evaluate the definition themselves.
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "formats/pbllm.h"

namespace lowbit::test {

struct RandomPbllm {
  int64_t rows = 0, cols = 0, gs = 0;
  std::vector<uint8_t> salient, sign, codes;  // (rows, cols)
  std::vector<float> mu, alpha, S, Z;         // (rows, G), (rows)
  std::shared_ptr<PbllmWeight> w;
};

inline RandomPbllm random_pbllm(int64_t rows, int64_t cols, int64_t gs, double salient_frac,
                                std::mt19937& rng) {
  RandomPbllm p;
  p.rows = rows, p.cols = cols, p.gs = gs;
  const int64_t G = cols / gs;
  std::uniform_real_distribution<double> u(0, 1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  p.salient.resize(size_t(rows * cols));
  p.sign.resize(size_t(rows * cols));
  p.codes.resize(size_t(rows * cols));
  for (size_t i = 0; i < p.salient.size(); ++i) {
    p.salient[i] = u(rng) < salient_frac;
    p.sign[i] = rng() & 1;
    p.codes[i] = uint8_t(rng());
  }
  for (int64_t i = 0; i < rows * G; ++i) {
    p.mu.push_back(0.01f * nd(rng));
    p.alpha.push_back(0.02f * nd(rng));
  }
  for (int64_t r = 0; r < rows; ++r) {
    p.S.push_back(std::ldexp(1.0f + float(u(rng)), -9));
    p.Z.push_back(float(rng() % 256));
  }
  p.w = make_pbllm(rows, cols, gs, p.salient.data(), p.sign.data(), p.codes.data(), p.mu.data(),
                   p.alpha.data(), p.S.data(), p.Z.data());
  return p;
}

}  // namespace lowbit::test

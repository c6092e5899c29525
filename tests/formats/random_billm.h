// Random BiLLM (formats/billm.h) weights for the format and kernel tests: random salient columns with a given
// fraction (or, with mixed_blocks, blocks cycling through none salient / all salient / the fraction), random
// planes A and B, and 7 parameters per (row, block) of either sign, mostly ~0.02 but one in ten scaled by
// 2^±14 so that the levels' f32 additions round (the order of billm_levels matters) — built by make_billm,
// with the inputs kept so tests can evaluate the definition themselves.
#pragma once
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "formats/billm.h"

namespace lowbit::test {

struct RandomBillm {
  int64_t rows = 0, cols = 0, gs = 0;
  std::vector<uint8_t> salient;  // (cols)
  std::vector<uint8_t> a, b;     // (rows, cols)
  std::vector<float> par;        // (rows, G, 7)
  std::shared_ptr<BillmWeight> w;
};

inline RandomBillm random_billm(int64_t rows, int64_t cols, int64_t gs, double salient_frac,
                                std::mt19937& rng, bool mixed_blocks = false) {
  RandomBillm p;
  p.rows = rows, p.cols = cols, p.gs = gs;
  const int64_t G = cols / gs;
  std::uniform_real_distribution<double> u(0, 1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  p.salient.resize(size_t(cols));
  for (int64_t c = 0; c < cols; ++c) {
    const int64_t kind = mixed_blocks ? (c / gs) % 3 : 2;
    p.salient[size_t(c)] = kind == 1 || (kind == 2 && u(rng) < salient_frac);
  }
  p.a.resize(size_t(rows * cols));
  p.b.resize(size_t(rows * cols));
  for (size_t i = 0; i < p.a.size(); ++i) p.a[i] = rng() & 1, p.b[i] = rng() & 1;
  for (int64_t i = 0; i < rows * G * kBillmPar; ++i) {
    float v = 0.02f * nd(rng);
    if (u(rng) < 0.1) v = std::ldexp(v, int(rng() % 29) - 14);
    p.par.push_back(v);
  }
  p.w = make_billm(rows, cols, gs, p.salient.data(), p.a.data(), p.b.data(), p.par.data());
  return p;
}

}  // namespace lowbit::test

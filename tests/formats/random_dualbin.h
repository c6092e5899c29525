// Random dual-binarization (formats/dualbin.h) weights for the format and kernel tests: random bit planes and
// fp16 scales of either sign (log-uniform magnitudes, some subnormal: random_affine.h's wide_random_scale),
// all drawn from one generator. Nothing here quantizes: every bit pattern and scale is a valid weight, so the
// decoders see all four values of every group.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "formats/dualbin.h"
#include "formats/random_affine.h"

namespace lowbit::test {

struct RandomDualBin {
  std::vector<uint8_t> plane1, plane2;
  std::vector<uint16_t> scales;
  DualBinWeight w;  // views of the vectors above (a moved RandomDualBin keeps them valid)
};

inline RandomDualBin random_dualbin(int64_t rows, int64_t cols, int64_t gs, std::mt19937& rng) {
  RandomDualBin p;
  p.plane1.resize(size_t(rows * cols / 8));
  p.plane2.resize(size_t(rows * cols / 8));
  for (uint8_t& b : p.plane1) b = uint8_t(rng());
  for (uint8_t& b : p.plane2) b = uint8_t(rng());
  p.scales.resize(size_t(2 * rows * (cols / gs)));
  for (uint16_t& s : p.scales) s = wide_random_scale(rng);
  p.w.rows = rows, p.w.cols = cols, p.w.group_size = gs;
  p.w.plane1 = p.plane1.data(), p.w.plane2 = p.plane2.data(), p.w.scales = p.scales.data();
  return p;
}

}  // namespace lowbit::test

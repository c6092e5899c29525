// Random QuIP (formats/quip.h) weights and rotation helpers for the format and kernel tests: uniform codes in
// [0, maxq], a log-uniform scale and column scales d, rotation seeds, all from one generator (the codes are
// kept unpacked, so a test can build Ŵ′ without the decoder under test); the dense matrix of a rotation; the
// rotation with its blocks' absolute values (for the |R|·|x| a tolerance is scaled by); and how many
// roundings an f32 rotation puts on each term.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "formats/quip.h"

namespace lowbit::test {

struct RandomQuip {
  std::vector<uint8_t> q;  // (rows, cols) the codes, unpacked, as generated
  std::vector<float> d;    // (cols)
  std::shared_ptr<QuipWeight> w;
};

inline uint64_t random_seed(std::mt19937& rng) {
  return uint64_t(rng()) << 32 | uint64_t(rng());
}

// s log-uniform in [2⁻⁸, 2²], d log-uniform in [1/4, 4]; U and V of `kind` from two random seeds.
inline RandomQuip random_quip(int bits, int64_t rows, int64_t cols, RotationKind kind, std::mt19937& rng) {
  RandomQuip p;
  const uint32_t maxq = (1u << bits) - 1;
  p.q.resize(size_t(rows * cols));
  for (uint8_t& v : p.q) v = uint8_t(rng() % (maxq + 1));
  std::uniform_real_distribution<float> lg(-2.0f, 2.0f), ls(-8.0f, 2.0f);
  p.d.resize(size_t(cols));
  for (float& v : p.d) v = std::exp2(lg(rng));
  const float s = std::exp2(ls(rng));
  auto U = make_rotation(kind, rows, random_seed(rng), "U");
  auto V = make_rotation(kind, cols, random_seed(rng), "V");
  p.w = make_quip(bits, rows, cols, p.q.data(), s, p.d.data(), U, V);
  return p;
}

// R (n, n) row-major, in double: column j is rotate_ref<double>(e_j). Exact: every entry of R·e_j is one
// product of two f32 block entries (Kronecker: A[a][k]·B[j][i], 48 significant bits) or ±1/√n in double
// (Hadamard: the butterflies and the ±1 dense product only add zeros to ±1).
inline std::vector<double> dense_rotation(const Rotation& r, bool transpose = false) {
  const int64_t n = r.n;
  std::vector<double> R(static_cast<size_t>(n * n)), e(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    std::fill(e.begin(), e.end(), 0.0);
    e[size_t(j)] = 1;
    rotate_ref(r, e.data(), transpose);
    for (int64_t i = 0; i < n; ++i) R[size_t(i * n + j)] = e[size_t(i)];
  }
  return R;
}

// x (n) ← |R|·x (or |R|ᵀ·x) in double, for x ≥ 0: the magnitude Σ_j |R_ij|·x_j that bounds a rotation's
// rounding errors. Kronecker: |R| = P_out·(|A| ⊗ |B|)·P_in (a permutation only moves entries, and an entry of
// A ⊗ B is one product), so it is rotate_ref<double> of a copy with the blocks' absolute values; Hadamard:
// every |R_ij| is 1/√n.
inline void abs_rotate(const Rotation& r, double* x, bool transpose) {
  if (r.kind == RotationKind::Hadamard) {
    double sum = 0;
    for (int64_t i = 0; i < r.n; ++i) sum += x[i];
    for (int64_t i = 0; i < r.n; ++i) x[i] = sum / std::sqrt(double(r.n));
    return;
  }
  Rotation a = r;
  for (float& v : a.a) v = std::fabs(v);
  for (float& v : a.b) v = std::fabs(v);
  for (float& v : a.bt) v = std::fabs(v);
  rotate_ref(a, x, transpose);
}

// k such that an f32 rotation of x (rotate_ref<float>, rotate_rows) errs by at most γ_k·(|R|·|x|)_i in
// element i (γ_k = k·u/(1 − k·u), u = 2⁻²⁴; Higham, Accuracy and Stability, §3.1):
// * Kronecker: U = X·Bᵀ is a dot product of p2 terms (≤ p2 roundings each, as rounded product + sum or as a
//   fused multiply-add), then A·U of p1 terms (≤ p1 more): |Ŷ − Y| ≤ γ_p2·|A|·|X|·|B|ᵀ + γ_p1·|A|·|Û| ≤
//   (γ_p2 + γ_p1·(1 + γ_p2))·(|A| ⊗ |B|)·|x| ≤ γ_{p1+p2}·…; the permutations are exact.
// * Hadamard (formats/hadamard.h): log2(n/m) butterfly additions, m additions of the dense product, the
//   f32 rounding of 1/√n and the multiply by it: K = log2(n/m) + m + 2 (hadamard_test.cpp's bound); the ±1
//   signs are exact.
inline int64_t rotation_roundings(const Rotation& r) {
  if (r.kind == RotationKind::Kronecker) return r.p1 + r.p2;
  return int64_t(std::countr_zero(uint64_t(r.n / r.had_m))) + r.had_m + 2;
}

inline double gamma32(int64_t k) {
  const double u = std::ldexp(1.0, -24);
  return double(k) * u / (1 - double(k) * u);
}

}  // namespace lowbit::test

#include "formats/hadamard.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace lowbit {

namespace {

// The Paley constructions (R. E. A. C. Paley, "On orthogonal matrices", J. Math. Phys. 12 (1933) 311–320;
// stated as below e.g. in K. J. Horadam, "Hadamard Matrices and Their Applications", Princeton 2007). For
// an odd prime q, χ is the quadratic character of GF(q) (χ(0) = 0, χ(a) = 1 for a nonzero square, −1
// otherwise) and Q the q×q Jacobsthal matrix Q[i][j] = χ(j − i); Q·Qᵀ = q·I − J and every row of Q sums to 0.

// χ(a) for a ∈ [0, q): squares of 1..q−1 are the nonzero squares.
std::vector<int> quadratic_character(int q) {
  std::vector<int> chi(size_t(q), -1);
  chi[0] = 0;
  for (int i = 1; i < q; ++i) chi[size_t(i * i % q)] = 1;
  return chi;
}

int jacobsthal(const std::vector<int>& chi, int q, int i, int j) {
  return chi[size_t(((j - i) % q + q) % q)];
}

// Paley I, q ≡ 3 (mod 4): χ(−1) = −1 makes Q antisymmetric, and the (q+1)×(q+1) matrix
//     H = [ 1   1ᵀ  ]
//         [ −1  Q + I ]
// has H·Hᵀ = (q+1)·I (row 0 is orthogonal to the others because Q's rows sum to 0; two lower rows because
// (Q + I)(Q + I)ᵀ = q·I − J + I, Q + Qᵀ = 0, plus the first column's 1). q = 11 gives 12, q = 19 gives 20.
std::vector<int8_t> paley1(int q) {
  const int m = q + 1;
  const std::vector<int> chi = quadratic_character(q);
  std::vector<int8_t> h(size_t(m * m));
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) {
      int v;
      if (r == 0)
        v = 1;
      else if (c == 0)
        v = -1;
      else
        v = jacobsthal(chi, q, r - 1, c - 1) + (r == c ? 1 : 0);
      h[size_t(r * m + c)] = int8_t(v);
    }
  return h;
}

// Paley II, q ≡ 1 (mod 4): χ(−1) = 1 makes Q symmetric and the (q+1)×(q+1) conference matrix
//     C = [ 0  1ᵀ ]
//         [ 1  Q  ]
// satisfies C·Cᵀ = q·I. Replacing each entry of C by a 2×2 block, 0 by [[1, −1], [−1, −1]] and ±1 by
// ±[[1, 1], [1, −1]], gives a Hadamard matrix of order 2(q+1) (symmetric, as C and the blocks are). q = 13
// gives 28.
std::vector<int8_t> paley2(int q) {
  const int c_n = q + 1, m = 2 * c_n;
  const std::vector<int> chi = quadratic_character(q);
  std::vector<int8_t> h(size_t(m * m));
  for (int r = 0; r < c_n; ++r)
    for (int c = 0; c < c_n; ++c) {
      const int e = r == 0 ? (c == 0 ? 0 : 1) : c == 0 ? 1 : jacobsthal(chi, q, r - 1, c - 1);
      // block[i][j], i, j ∈ {0, 1}
      const int block[2][2] = {{e == 0 ? 1 : e, e == 0 ? -1 : e}, {e == 0 ? -1 : e, e == 0 ? -1 : -e}};
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) h[size_t((2 * r + i) * m + 2 * c + j)] = int8_t(block[i][j]);
    }
  return h;
}

}  // namespace

int64_t hadamard_base(int64_t n) {
  if (n < 1) fail("hadamard_base: length {} (must be >= 1)", n);
  int64_t odd = n;
  while (odd % 2 == 0) odd /= 2;
  if (odd == 1) return 1;
  if ((odd == 3 || odd == 5 || odd == 7) && n % (4 * odd) == 0) return 4 * odd;
  return 0;
}

const int8_t* hadamard_matrix(int m) {
  static const int8_t one = 1;
  static const std::vector<int8_t> h12 = paley1(11), h20 = paley1(19), h28 = paley2(13);
  switch (m) {
    case 1:
      return &one;
    case 12:
      return h12.data();
    case 20:
      return h20.data();
    case 28:
      return h28.data();
    default:
      fail("hadamard_matrix: no {}x{} table (have 1, 12, 20, 28)", m, m);
  }
}

template <class T>
void hadamard_ref(T* x, int64_t n, bool transpose) {
  const int64_t m = hadamard_base(n);
  if (m == 0) fail("hadamard: length {} is not 2^k, 12·2^k, 20·2^k or 28·2^k", n);
  const int64_t p = n / m;  // 2^k
  for (int64_t h = 1; h < p; h *= 2)
    for (int64_t a0 = 0; a0 < p; a0 += 2 * h)
      for (int64_t i = a0 * m; i < (a0 + h) * m; ++i) {
        const T u = x[i], v = x[i + h * m];
        x[i] = u + v;
        x[i + h * m] = u - v;
      }
  if (m > 1) {
    const int8_t* H = hadamard_matrix(int(m));
    std::array<T, 28> y;  // (m) one a's outputs: every output reads all m inputs
    for (int64_t a = 0; a < p; ++a) {
      T* xa = x + a * m;
      for (int64_t b = 0; b < m; ++b) {
        T acc = 0;
        for (int64_t c = 0; c < m; ++c) acc += T(transpose ? H[c * m + b] : H[b * m + c]) * xa[c];
        y[size_t(b)] = acc;
      }
      std::copy(y.begin(), y.begin() + m, xa);
    }
  }
  const T s = T(1.0 / std::sqrt(double(n)));
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}
template void hadamard_ref<float>(float*, int64_t, bool);
template void hadamard_ref<double>(double*, int64_t, bool);

}  // namespace lowbit

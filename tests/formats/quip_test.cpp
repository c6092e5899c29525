// The QuIP format (formats/quip.h): upstream's butterfly factorisation; the rotations against their
// definitions (the dense Kronecker matrix P_out·(A ⊗ B)·P_in entry by entry, H_n·diag(σ) for the Hadamard
// kind), orthogonal, special orthogonal blocks, reproducible from the seed, the transpose the inverse, and
// one-line errors for widths a kind cannot rotate; the f32 reference rotation against the double one; the
// checkpoint tensors read back through from_tensors bitwise (including malformed ones, and the fuzz seeds);
// bits per weight; and the reference dequantizer against an independent dense Uᵀ·Ŵ′·V·diag(1/d).
//
// Tolerances (u = 2⁻²⁴, u_d = 2⁻⁵³, γ_k = k·u/(1 − k·u) and γd_k the same with u_d; Higham, Accuracy and
// Stability, §3.1):
// * Orthogonality. A block is the f32 rounding A = Q + E of a double Q from Gram–Schmidt twice, |QᵀQ − I| ≤ δ
//   entrywise with δ a small multiple of p·u_d ("twice is enough", Giraud et al. 2005; δ = 1e-12 allows a
//   factor of 40 at p = 224), and |E| ≤ u·|Q|. By Cauchy–Schwarz |(QᵀE)_ij| ≤ u·‖q_i‖·‖q_j‖ ≤ u·(1 + δ), so
//   |AᵀA − I| ≤ ε := δ + (2u + u²)·(1 + δ) entrywise: a few ulps whatever the block size (the sum over the
//   column is bounded by the columns' norms, not by √p times the largest term). RᵀR = P_inᵀ·(AᵀA ⊗ BᵀB)·P_in,
//   and an entry of (I + F_A) ⊗ (I + F_B) − I is at most ε + ε + ε²; forming RᵀR in double adds
//   γd_n·Σ_k |R_ki|·|R_kj| ≤ γd_n·(1 + ε): tolerance 2ε + ε² + γd_n·(1 + ε). Hadamard: every entry is ±s,
//   s = fl(1/√n) in double, so RᵀR's diagonal is n·s² = 1 ± 3u_d and its off-diagonal sums of ±s²: γd_{n+3}.
// * det A: AᵀA = I + F with ‖F‖₂ ≤ ‖F‖_F ≤ p·ε, so A's singular values lie in [√(1 − pε), √(1 + pε)] and
//   det A > 0 lies within (1 + pε)^(p/2) − 1 of 1; the LU in double errs by far less than the slack 1e-10.
// * The transpose undoes the rotation: RᵀR·x − x = F·x with |F_ij| ≤ the orthogonality tolerance, so
//   |x̂ − x|_i ≤ tol·‖x‖₁, plus the two double rotations' γd_{p1+p2}·(|R|·|x|) ≤ 1e-12·‖x‖₁.
// * f32 vs double rotation: the f32 rotation errs by ≤ γ_k·(|R|·|x|)_i with k = rotation_roundings
//   (random_quip.h: p1 + p2 for Kronecker, log2(n/m) + m + 2 for Hadamard), the double one by the same with
//   u_d: tolerance (γ_k + 1e-12)·(|R|·|x|)_i.
// * quip_dequantize_rows_ref vs the dense construction: both start from the same f32 Ŵ′ and exact U, V
//   (random_quip.h's dense_rotation); each double path (the reference's row of Uᵀ·Ŵ′, its Vᵀ rotation and
//   the division by d; the dense Uᵀ·Ŵ′ and (·)·V) errs by ≤ γd_{rows + cols + k_V + 2}·mag with
//   mag_rc = (|U|ᵀ·|Ŵ′|·|V|)_rc / d_c, and the reference rounds its result to f32 once (≤ u·|Ŵ_rc|):
//   tolerance u·|Ŵ_rc| + 2·γd_{rows + cols + k_V + 2}·mag_rc.
#include "formats/quip.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "formats/hadamard.h"
#include "formats/random_quip.h"
#include "io/safetensors.h"
#include "kernels/format_kernels.h"
#include "kernels/quip_matmul.h"
#include "test_util.h"

namespace lowbit {
namespace {

using test::dense_rotation;
using test::gamma32;
using test::rotation_roundings;

double gamma_d(int64_t k) {
  const double u = std::ldexp(1.0, -53);
  return double(k) * u / (1 - double(k) * u);
}

// det of a p×p f32 matrix, by LU with partial pivoting in double.
double det(const std::vector<float>& m, int64_t p) {
  std::vector<double> a(m.begin(), m.end());
  double det = 1;
  for (int64_t c = 0; c < p; ++c) {
    int64_t piv = c;
    for (int64_t r = c + 1; r < p; ++r)
      if (std::fabs(a[size_t(r * p + c)]) > std::fabs(a[size_t(piv * p + c)])) piv = r;
    if (piv != c) {
      for (int64_t k = 0; k < p; ++k) std::swap(a[size_t(c * p + k)], a[size_t(piv * p + k)]);
      det = -det;
    }
    const double d = a[size_t(c * p + c)];
    det *= d;
    for (int64_t r = c + 1; r < p; ++r) {
      const double f = a[size_t(r * p + c)] / d;
      for (int64_t k = c; k < p; ++k) a[size_t(r * p + k)] -= f * a[size_t(c * p + k)];
    }
  }
  return det;
}

// max_ij |(MᵀM − I)_ij| for M (p, p) (f32 or double entries), the products in double.
template <class T>
double orthogonality_error(const std::vector<T>& m, int64_t p) {
  double worst = 0;
  for (int64_t i = 0; i < p; ++i)
    for (int64_t j = 0; j < p; ++j) {
      double s = 0;
      for (int64_t k = 0; k < p; ++k) s += double(m[size_t(k * p + i)]) * double(m[size_t(k * p + j)]);
      worst = std::max(worst, std::fabs(s - (i == j ? 1.0 : 0.0)));
    }
  return worst;
}

bool is_permutation(const std::vector<int32_t>& p, int64_t n) {
  if (int64_t(p.size()) != n) return false;
  std::vector<bool> seen(size_t(n), false);
  for (int32_t v : p) {
    if (v < 0 || v >= n || seen[size_t(v)]) return false;
    seen[size_t(v)] = true;
  }
  return true;
}

const double kDelta = 1e-12;  // Gram–Schmidt twice in double (see the header)
double block_eps() {
  const double u = std::ldexp(1.0, -24);
  return kDelta + (2 * u + u * u) * (1 + kDelta);
}

std::vector<double> random_vector(int64_t n, std::mt19937& rng) {
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<double> x(static_cast<size_t>(n));
  for (double& v : x) v = double(float(nd(rng)));  // f32 values, so the f32 rotation sees the same input
  return x;
}

TEST(QuipRotation, ButterflyFactorsAreUpstreams) {
  // Sorted prime factors, the product of those at even positions and of those at odd ones.
  EXPECT_EQ(butterfly_factors(4096), std::make_pair(int64_t(64), int64_t(64)));
  EXPECT_EQ(butterfly_factors(14336), std::make_pair(int64_t(64), int64_t(224)));  // 2^11·7
  EXPECT_EQ(butterfly_factors(384), std::make_pair(int64_t(16), int64_t(24)));     // 2^7·3
  EXPECT_EQ(butterfly_factors(1024), std::make_pair(int64_t(32), int64_t(32)));
  EXPECT_EQ(butterfly_factors(128), std::make_pair(int64_t(16), int64_t(8)));
  EXPECT_EQ(butterfly_factors(11008), std::make_pair(int64_t(688), int64_t(16)));  // 2^8·43
  EXPECT_EQ(butterfly_factors(210), std::make_pair(int64_t(10), int64_t(21)));     // 2·5, 3·7
  EXPECT_EQ(butterfly_factors(12), std::make_pair(int64_t(6), int64_t(2)));        // 2·3, 2
  EXPECT_EQ(butterfly_factors(6), std::make_pair(int64_t(2), int64_t(3)));
  EXPECT_EQ(butterfly_factors(4), std::make_pair(int64_t(2), int64_t(2)));
  EXPECT_EQ(butterfly_factors(4099), std::make_pair(int64_t(4099), int64_t(1)));  // prime
  EXPECT_EQ(butterfly_factors(7), std::make_pair(int64_t(7), int64_t(1)));
  EXPECT_EQ(butterfly_factors(2), std::make_pair(int64_t(2), int64_t(1)));
  EXPECT_EQ(butterfly_factors(1), std::make_pair(int64_t(1), int64_t(1)));
  EXPECT_EQ(butterfly_factors(2 * 4099), std::make_pair(int64_t(2), int64_t(4099)));
  for (int64_t n = 2; n <= 600; ++n) {
    const auto [p1, p2] = butterfly_factors(n);
    ASSERT_EQ(p1 * p2, n) << n;
  }
}

// The dense matrix is P_out·(A ⊗ B)·P_in entry by entry, orthogonal, with special orthogonal blocks.
TEST(QuipRotation, KroneckerIsPermutedKroneckerProductOfSpecialOrthogonalBlocks) {
  const double eps = block_eps();
  for (int64_t n : {4, 6, 12, 128, 210, 384}) {
    SCOPED_TRACE(n);
    auto r = make_rotation(RotationKind::Kronecker, n, 1000 + uint64_t(n), "R");
    const auto [p1, p2] = butterfly_factors(n);
    ASSERT_EQ(r->kind, RotationKind::Kronecker);
    ASSERT_EQ(r->n, n);
    ASSERT_EQ(r->p1, p1);
    ASSERT_EQ(r->p2, p2);
    ASSERT_TRUE(is_permutation(r->perm_in, n));
    ASSERT_TRUE(is_permutation(r->perm_out, n));
    ASSERT_EQ(int64_t(r->a.size()), p1 * p1);
    ASSERT_EQ(int64_t(r->b.size()), p2 * p2);
    for (int64_t i = 0; i < p2; ++i)
      for (int64_t j = 0; j < p2; ++j) ASSERT_EQ(r->bt[size_t(j * p2 + i)], r->b[size_t(i * p2 + j)]);
    EXPECT_TRUE(r->signs.empty());
    // (P_out·M·P_in·x)[i] = Σ_m M[perm_out[i]][m]·x[perm_in[m]]: R[i][perm_in[m]] = M[perm_out[i]][m] with
    // M[l][m] = A[l / p2][m / p2]·B[l % p2][m % p2] (one product of two floats: exact in double).
    const std::vector<double> R = dense_rotation(*r);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t m = 0; m < n; ++m) {
        const int64_t l = r->perm_out[size_t(i)];
        const double want =
            double(r->a[size_t(l / p2 * p1 + m / p2)]) * double(r->b[size_t(l % p2 * p2 + m % p2)]);
        ASSERT_EQ(R[size_t(i * n + r->perm_in[size_t(m)])], want) << i << " " << m;
      }
    // The transpose direction is the transposed matrix, exactly.
    const std::vector<double> Rt = dense_rotation(*r, true);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) ASSERT_EQ(Rt[size_t(i * n + j)], R[size_t(j * n + i)]);
    EXPECT_LE(orthogonality_error(r->a, p1), eps);
    EXPECT_LE(orthogonality_error(r->b, p2), eps);
    EXPECT_LE(orthogonality_error(R, n), 2 * eps + eps * eps + gamma_d(n) * (1 + eps));
    for (const auto& [m, p] : {std::pair{&r->a, p1}, std::pair{&r->b, p2}}) {
      const double dt = det(*m, p), pe = double(p) * eps;
      EXPECT_GT(dt, 0) << p;
      EXPECT_LE(std::fabs(dt - 1), std::pow(1 + pe, double(p) / 2) - 1 + 1e-10) << p;
    }
  }
}

// The blocks of real model widths (built without the dense matrix): orthogonal and of determinant +1.
TEST(QuipRotation, ModelWidthBlocksAreSpecialOrthogonal) {
  const double eps = block_eps();
  for (int64_t n : {1024, 4096, 14336}) {
    auto r = make_rotation(RotationKind::Kronecker, n, 7, "R");
    for (const auto& [m, p] : {std::pair{&r->a, r->p1}, std::pair{&r->b, r->p2}}) {
      SCOPED_TRACE(::testing::Message() << n << " p=" << p);
      EXPECT_LE(orthogonality_error(*m, p), eps);
      const double dt = det(*m, p), pe = double(p) * eps;
      EXPECT_GT(dt, 0);
      EXPECT_LE(std::fabs(dt - 1), std::pow(1 + pe, double(p) / 2) - 1 + 1e-10);
    }
  }
}

// Over many seeds both signs of det G occur, so the column flip that makes det = +1 is exercised.
TEST(QuipRotation, SmallBlocksAreSpecialOrthogonalForEverySeed) {
  for (uint64_t seed = 0; seed < 64; ++seed) {
    auto r = make_rotation(RotationKind::Kronecker, 6, seed, "R");  // A 2×2, B 3×3
    EXPECT_GT(det(r->a, 2), 0.5) << seed;
    EXPECT_GT(det(r->b, 3), 0.5) << seed;
  }
}

TEST(QuipRotation, HadamardIsTheTransformTimesRandomSigns) {
  for (int64_t n : {2, 4, 12, 20, 24, 28, 40, 56, 128, 384}) {
    SCOPED_TRACE(n);
    auto r = make_rotation(RotationKind::Hadamard, n, 77 + uint64_t(n), "R");
    ASSERT_EQ(r->kind, RotationKind::Hadamard);
    const int64_t m = hadamard_base(n);
    ASSERT_EQ(r->had_m, m);
    ASSERT_EQ(int64_t(r->signs.size()), n);
    int minus = 0;
    for (float s : r->signs) {
      ASSERT_TRUE(s == 1.0f || s == -1.0f);
      minus += s < 0;
    }
    if (n >= 24) {  // both signs (all alike has probability 2^(1−n))
      EXPECT_GT(minus, 0);
      EXPECT_LT(minus, n);
    }
    // R[i][j] = σ_j·(1/√n)·H_{2^k}[a][a']·H_m[b][b'] with i = a·m + b, j = a'·m + b' (formats/hadamard.h).
    const int8_t* Hm = hadamard_matrix(int(m));
    const double s = 1.0 / std::sqrt(double(n));
    const std::vector<double> R = dense_rotation(*r);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const int64_t a = i / m, b = i % m, a2 = j / m, b2 = j % m;
        const int h = (std::popcount(uint64_t(a & a2)) % 2 ? -1 : 1) * Hm[b * m + b2];
        ASSERT_EQ(R[size_t(i * n + j)], double(r->signs[size_t(j)]) * h * s) << i << " " << j;
      }
    const std::vector<double> Rt = dense_rotation(*r, true);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) ASSERT_EQ(Rt[size_t(i * n + j)], R[size_t(j * n + i)]);
    EXPECT_LE(orthogonality_error(R, n), gamma_d(n + 3));
  }
}

TEST(QuipRotation, TransposeIsTheInverse) {
  std::mt19937 rng(5);
  const double eps = block_eps();
  for (RotationKind kind : {RotationKind::Kronecker, RotationKind::Hadamard})
    for (int64_t n : {4, 12, 128, 384, 1024, 14336}) {
      SCOPED_TRACE(::testing::Message() << rotation_kind_name(kind) << " " << n);
      auto r = make_rotation(kind, n, 3, "R");
      const double tol =
          kind == RotationKind::Kronecker ? 2 * eps + eps * eps + gamma_d(n) * (1 + eps) : gamma_d(n + 3);
      const std::vector<double> x = random_vector(n, rng);
      double l1 = 0;
      for (double v : x) l1 += std::fabs(v);
      for (bool transpose_first : {false, true}) {
        std::vector<double> y = x;
        rotate_ref(*r, y.data(), transpose_first);
        rotate_ref(*r, y.data(), !transpose_first);
        for (int64_t i = 0; i < n; ++i) ASSERT_LE(std::fabs(y[size_t(i)] - x[size_t(i)]), (tol + 1e-12) * l1);
      }
    }
}

TEST(QuipRotation, SameSeedSameRotationOtherSeedAnother) {
  for (int64_t n : {12, 384, 4096}) {
    SCOPED_TRACE(n);
    auto k1 = make_rotation(RotationKind::Kronecker, n, 42, "R"),
         k2 = make_rotation(RotationKind::Kronecker, n, 42, "other name"),
         k3 = make_rotation(RotationKind::Kronecker, n, 43, "R");
    EXPECT_EQ(k1->seed, 42u);
    EXPECT_EQ(k1->perm_in, k2->perm_in);
    EXPECT_EQ(k1->perm_out, k2->perm_out);
    EXPECT_EQ(k1->a, k2->a);
    EXPECT_EQ(k1->b, k2->b);
    EXPECT_EQ(k1->bt, k2->bt);
    EXPECT_NE(k1->perm_in, k3->perm_in);
    EXPECT_NE(k1->perm_out, k3->perm_out);
    EXPECT_NE(k1->a, k3->a);
    EXPECT_NE(k1->b, k3->b);
    EXPECT_NE(k1->perm_in, k1->perm_out);  // independent draws of one seed
    auto h1 = make_rotation(RotationKind::Hadamard, n, 42, "R"),
         h2 = make_rotation(RotationKind::Hadamard, n, 42, "R"),
         h3 = make_rotation(RotationKind::Hadamard, n, 43, "R");
    EXPECT_EQ(h1->signs, h2->signs);
    EXPECT_NE(h1->signs, h3->signs);
  }
  // Seeds differing in the top bit (a checkpoint stores them as int64 bit patterns).
  auto lo = make_rotation(RotationKind::Kronecker, 384, 5, "R"),
       hi = make_rotation(RotationKind::Kronecker, 384, 5 | uint64_t(1) << 63, "R");
  EXPECT_NE(lo->perm_in, hi->perm_in);
}

TEST(QuipRotation, WidthsAKindCannotRotateGiveOneLineErrors) {
  auto err = [](RotationKind kind, int64_t n) {
    return test::error_of([&] { make_rotation(kind, n, 1, "f.safetensors: L (rows)"); });
  };
  for (int64_t n : {7, 4099})
    EXPECT_EQ(err(RotationKind::Kronecker, n),
              "f.safetensors: L (rows): width " + std::to_string(n) +
                  " is prime, so it has no factorisation p1·p2 for QuIP's Kronecker rotation (use --rotation "
                  "hadamard if it is 2^k·12/20/28, or leave this model to another method)");
  EXPECT_EQ(err(RotationKind::Kronecker, 2).rfind("f.safetensors: L (rows): width 2 is prime, so", 0), 0u);
  for (int64_t n : {1000, 6, 36, 3})
    EXPECT_EQ(err(RotationKind::Hadamard, n),
              "f.safetensors: L (rows): width " + std::to_string(n) +
                  " is not 2^k·m with m in {1, 12, 20, 28}, so it has no Hadamard rotation (use --rotation "
                  "kronecker)");
  for (RotationKind kind : {RotationKind::Kronecker, RotationKind::Hadamard})
    for (int64_t n : {1, 0, -4})
      EXPECT_EQ(err(kind, n), "f.safetensors: L (rows): cannot rotate a width of " + std::to_string(n));
  for (int64_t n : {4, 6, 4096}) EXPECT_EQ(err(RotationKind::Kronecker, n), "(no error)") << n;
  for (int64_t n : {2, 12, 14336}) EXPECT_EQ(err(RotationKind::Hadamard, n), "(no error)") << n;
}

TEST(QuipRotation, FloatReferenceMatchesDoubleWithinDerivedBound) {
  std::mt19937 rng(6);
  struct Case {
    RotationKind kind;
    int64_t n;
  };
  std::vector<Case> cases;
  for (int64_t n : {4, 6, 12, 128, 210, 384, 1024, 14336}) cases.push_back({RotationKind::Kronecker, n});
  for (int64_t n : {2, 4, 12, 20, 28, 40, 384, 1024, 14336}) cases.push_back({RotationKind::Hadamard, n});
  for (const Case& cs : cases)
    for (bool transpose : {false, true}) {
      SCOPED_TRACE(::testing::Message() << rotation_kind_name(cs.kind) << " " << cs.n << " t=" << transpose);
      auto r = make_rotation(cs.kind, cs.n, 11, "R");
      const std::vector<double> x = random_vector(cs.n, rng);
      std::vector<double> yd = x, mag(x.size());
      std::vector<float> yf(x.begin(), x.end());
      for (size_t i = 0; i < x.size(); ++i) mag[i] = std::fabs(x[i]);
      rotate_ref(*r, yd.data(), transpose);
      rotate_ref(*r, yf.data(), transpose);
      test::abs_rotate(*r, mag.data(), transpose);
      const double tol = gamma32(rotation_roundings(*r)) + 1e-12;
      double worst = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_LE(std::fabs(double(yf[i]) - yd[i]), tol * mag[i]) << i;
        worst = std::max(worst, std::fabs(double(yf[i]) - yd[i]) / mag[i]);
      }
      EXPECT_GT(worst, 0);  // the f32 path does round
    }
}

// --- the weight ---

using Stored = std::map<std::string, TensorView>;

Stored stored_tensors(const QuipWeight& w) {
  Stored out;
  for (FormatTensor& t : quip_format().tensors(w)) out[t.suffix] = t.view;
  return out;
}

std::shared_ptr<PackedWeight> read_back(const Stored& stored, int64_t rows, int64_t cols,
                                        const std::string& what = "x") {
  auto get = [&](std::string_view s) -> const TensorView* {
    auto it = stored.find(std::string(s));
    return it == stored.end() ? nullptr : &it->second;
  };
  return quip_format().from_tensors(get, rows, cols, what);
}

void expect_same_rotation(const Rotation& a, const Rotation& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.n, b.n);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.p1, b.p1);
  EXPECT_EQ(a.p2, b.p2);
  EXPECT_EQ(a.perm_in, b.perm_in);
  EXPECT_EQ(a.perm_out, b.perm_out);
  EXPECT_EQ(a.a, b.a);
  EXPECT_EQ(a.b, b.b);
  EXPECT_EQ(a.bt, b.bt);
  EXPECT_EQ(a.had_m, b.had_m);
  EXPECT_EQ(a.signs, b.signs);
}

struct Shape {
  RotationKind kind;
  int64_t rows, cols;
};
const Shape kShapes[] = {{RotationKind::Kronecker, 128, 384}, {RotationKind::Kronecker, 384, 128},
                         {RotationKind::Kronecker, 24, 40},   {RotationKind::Kronecker, 6, 210},
                         {RotationKind::Kronecker, 9, 12},    {RotationKind::Hadamard, 128, 384},
                         {RotationKind::Hadamard, 24, 40},    {RotationKind::Hadamard, 12, 28},
                         {RotationKind::Hadamard, 2, 20}};

TEST(QuipFormat, IsRegisteredWithItsKernels) {
  ASSERT_EQ(find_format("quip"), &quip_format());
  EXPECT_EQ(quip_format().marker_suffix, "quip_codes");
  EXPECT_NO_THROW(format_kernels(quip_format()));
  EXPECT_EQ(rotation_kind_name(RotationKind::Kronecker), "kronecker");
  EXPECT_EQ(rotation_kind_name(RotationKind::Hadamard), "hadamard");
}

TEST(QuipFormat, MakeQuipPacksCodesAndKeepsItsInputs) {
  std::mt19937 rng(1);
  for (int bits : {2, 3, 4}) {
    const test::RandomQuip p = test::random_quip(bits, 24, 40, RotationKind::Kronecker, rng);
    const QuipWeight& w = *p.w;
    EXPECT_EQ(w.bits, bits);
    EXPECT_EQ(w.maxq(), (1 << bits) - 1);
    EXPECT_EQ(w.row_bytes(), size_t(40 * bits / 8));
    EXPECT_EQ(w.meta[0], int64_t(RotationKind::Kronecker));
    EXPECT_EQ(uint64_t(w.meta[1]), w.U->seed);
    EXPECT_EQ(uint64_t(w.meta[2]), w.V->seed);
    EXPECT_EQ(std::memcmp(w.d, p.d.data(), p.d.size() * 4), 0);
    EXPECT_NE(w.d, p.d.data());  // copied
    for (int64_t r = 0; r < 24; ++r)
      for (int64_t c = 0; c < 40; ++c)
        ASSERT_EQ(packed_code(w.codes + size_t(r) * w.row_bytes(), bits, c), p.q[size_t(r * 40 + c)]);
    // The centred affine view: the same code bytes, scale 1, zero (maxq − 1)/2, one group per row.
    EXPECT_EQ(w.centred.codes, w.codes);
    EXPECT_EQ(w.centred.bits, bits);
    EXPECT_EQ(w.centred.group_size, 40);
    EXPECT_EQ(w.centred.g_idx, nullptr);
    for (int64_t r = 0; r < 24; ++r) {
      EXPECT_EQ(f16_to_f32(w.centred.scales[r]), 1.0f);
      EXPECT_EQ(w.centred.zeros[r], (w.maxq() - 1) / 2);
    }
    // Ŵ′ = s·(2q − maxq)/maxq in f32, as the header defines it.
    std::vector<float> wq(24 * 40);
    quip_rotated_rows(w, 0, 24, wq.data());
    for (int64_t i = 0; i < 24 * 40; ++i) {
      const float want = w.scale * (float(2 * int(p.q[size_t(i)]) - w.maxq()) / float(w.maxq()));
      ASSERT_EQ(wq[size_t(i)], want) << i;
    }
    std::vector<float> mid(2 * 40);
    quip_rotated_rows(w, 5, 2, mid.data());
    EXPECT_EQ(std::memcmp(mid.data(), wq.data() + 5 * 40, mid.size() * 4), 0);
  }
}

TEST(QuipFormat, MakeQuipRejectsBadInputs) {
  std::vector<uint8_t> q(6 * 12, 3);
  std::vector<float> d(12, 1.0f);
  auto U = make_rotation(RotationKind::Kronecker, 6, 1, "U"),
       V = make_rotation(RotationKind::Kronecker, 12, 2, "V");
  auto err = [&](int bits, float s) {
    return test::error_of([&] { make_quip(bits, 6, 12, q.data(), s, d.data(), U, V); });
  };
  EXPECT_EQ(err(2, 1.0f), "(no error)");
  q[1 * 12 + 2] = 4;
  EXPECT_EQ(err(2, 1.0f), "make_quip: code 4 at [1, 2] exceeds 3");
  EXPECT_EQ(err(3, 1.0f), "(no error)");
  q[5 * 12 + 11] = 16;
  EXPECT_EQ(err(4, 1.0f), "make_quip: code 16 at [5, 11] exceeds 15");
  q[5 * 12 + 11] = 0;
  EXPECT_EQ(err(5, 1.0f), "make_quip: QuIP stores 2, 3 or 4 bits per weight, not 5");
  EXPECT_EQ(err(1, 1.0f), "make_quip: QuIP stores 2, 3 or 4 bits per weight, not 1");
  EXPECT_EQ(err(3, 0.0f), "make_quip: scale 0 is not a positive number");
  EXPECT_EQ(err(3, -0.5f), "make_quip: scale -0.5 is not a positive number");
  EXPECT_EQ(err(3, std::numeric_limits<float>::quiet_NaN()), "make_quip: scale nan is not a positive number");
  EXPECT_EQ(err(3, std::numeric_limits<float>::infinity()), "make_quip: scale inf is not a positive number");
  d[4] = 0.0f;
  EXPECT_EQ(err(3, 1.0f), "make_quip: column scale d = 0 is not a positive number");
  d[4] = -2.0f;
  EXPECT_EQ(err(3, 1.0f), "make_quip: column scale d = -2 is not a positive number");
  d[4] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(err(3, 1.0f), "make_quip: column scale d = inf is not a positive number");
  d[4] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(err(3, 1.0f), "make_quip: column scale d = nan is not a positive number");
}

TEST(QuipFormat, BitsPerWeightCountEveryStoredByte) {
  std::mt19937 rng(2);
  for (const Shape& s : kShapes)
    for (int bits : {2, 3, 4}) {
      SCOPED_TRACE(::testing::Message() << s.rows << "x" << s.cols << " " << bits);
      const test::RandomQuip p = test::random_quip(bits, s.rows, s.cols, s.kind, rng);
      double bytes = 0;
      for (const auto& [suffix, t] : stored_tensors(*p.w)) bytes += double(t.nbytes);
      const double rb = double((s.cols * bits + 7) / 8);
      const double want =
          (rb * 8 * double(s.rows) + 32 + 32 * double(s.cols) + 192) / double(s.rows * s.cols);
      EXPECT_EQ(quip_format().bits_per_weight(*p.w), want);
      EXPECT_DOUBLE_EQ(quip_format().bits_per_weight(*p.w), bytes * 8 / double(s.rows * s.cols));
    }
  // A 4096×4096 2-bit weight: 2 bits plus (32 + 32·4096 + 192) / 4096² for s, d and the meta.
  QuipWeight w;
  w.rows = w.cols = 4096, w.bits = 2;
  EXPECT_DOUBLE_EQ(w.bits_per_weight(), 2 + (32.0 + 32.0 * 4096 + 192) / (4096.0 * 4096.0));
}

TEST(QuipFormat, TensorsReadBackBitwise) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const Shape& s : kShapes)
    for (int bits : {2, 3, 4}) {
      SCOPED_TRACE(::testing::Message()
                   << rotation_kind_name(s.kind) << " " << s.rows << "x" << s.cols << " " << bits);
      const test::RandomQuip p = test::random_quip(bits, s.rows, s.cols, s.kind, rng);
      const QuipWeight& w = *p.w;
      const Stored stored = stored_tensors(w);
      ASSERT_EQ(stored.size(), 4u);
      EXPECT_EQ(stored.at("quip_codes").dtype, DType::U8);
      EXPECT_EQ(stored.at("quip_codes").shape, (std::vector<int64_t>{s.rows, int64_t(w.row_bytes())}));
      EXPECT_EQ(stored.at("quip_scale").dtype, DType::F32);
      EXPECT_EQ(stored.at("quip_scale").shape, (std::vector<int64_t>{1}));
      EXPECT_EQ(stored.at("quip_d").dtype, DType::F32);
      EXPECT_EQ(stored.at("quip_d").shape, (std::vector<int64_t>{s.cols}));
      EXPECT_EQ(stored.at("quip_meta").dtype, DType::I64);
      EXPECT_EQ(stored.at("quip_meta").shape, (std::vector<int64_t>{3}));
      auto back_pw = read_back(stored, s.rows, s.cols);
      ASSERT_EQ(&back_pw->format(), &quip_format());
      const QuipWeight& b = as_quip(*back_pw);
      EXPECT_EQ(b.rows, s.rows);
      EXPECT_EQ(b.cols, s.cols);
      EXPECT_EQ(b.bits, bits);
      EXPECT_EQ(std::memcmp(b.codes, w.codes, w.row_bytes() * size_t(s.rows)), 0);
      EXPECT_EQ(std::memcmp(&b.scale, &w.scale, 4), 0);
      EXPECT_EQ(std::memcmp(b.d, w.d, size_t(s.cols) * 4), 0);
      EXPECT_EQ(std::memcmp(b.meta, w.meta, sizeof(w.meta)), 0);
      expect_same_rotation(*b.U, *w.U);
      expect_same_rotation(*b.V, *w.V);
      EXPECT_EQ(b.centred.codes, b.codes);
      EXPECT_EQ(b.centred.zeros[0], w.centred.zeros[0]);
      // The same products, bit for bit, on every path.
      const int64_t n = 5;
      std::vector<float> x(size_t(n * s.cols));
      for (float& v : x) v = nd(rng);
      std::vector<float> ya(size_t(n * s.rows)), yb(ya.size()), da(size_t(s.rows * s.cols)), db(da.size());
      quip_matmul(w, x.data(), n, ya.data());
      quip_matmul(b, x.data(), n, yb.data());
      EXPECT_EQ(std::memcmp(ya.data(), yb.data(), ya.size() * 4), 0);
      quip_matmul(w, x.data(), 1, ya.data());
      quip_matmul(b, x.data(), 1, yb.data());
      EXPECT_EQ(std::memcmp(ya.data(), yb.data(), size_t(s.rows) * 4), 0);
      quip_matmul_scalar(w, x.data(), n, ya.data());
      quip_matmul_scalar(b, x.data(), n, yb.data());
      EXPECT_EQ(std::memcmp(ya.data(), yb.data(), ya.size() * 4), 0);
      quip_format().dequantize_ref(w, 0, s.rows, da.data());
      quip_format().dequantize_ref(b, 0, s.rows, db.data());
      EXPECT_EQ(std::memcmp(da.data(), db.data(), da.size() * 4), 0);
    }
}

// The bit width is read back from the row length alone: where two widths pack `cols` codes into the same
// number of bytes (cols ≤ 6) a checkpoint could not tell them apart, so such a weight is refused when made
// and when read. From cols = 7 on the three lengths differ (for cols ≥ 8 by at least cols/8 bytes).
TEST(QuipFormat, BitWidthIsUnambiguousInTheRowLength) {
  std::mt19937 rng(4);
  auto row_bytes = [](int64_t cols, int b) { return (cols * b + 7) / 8; };
  for (int64_t cols = 2; cols <= 64; ++cols) {
    const bool distinct =
        row_bytes(cols, 2) != row_bytes(cols, 3) && row_bytes(cols, 3) != row_bytes(cols, 4);
    EXPECT_EQ(distinct, cols >= 7) << cols;
  }
  const std::vector<uint8_t> q(4 * 6, 1);
  const std::vector<float> d(6, 1.0f);
  auto U = make_rotation(RotationKind::Kronecker, 4, 1, "U");
  auto V = make_rotation(RotationKind::Kronecker, 6, 2, "V");  // 6 codes: 2, 3, 3 bytes for 2, 3, 4 bits
  EXPECT_EQ(test::error_of([&] { make_quip(2, 4, 6, q.data(), 1.0f, d.data(), U, V); }), "(no error)");
  EXPECT_EQ(test::error_of([&] { make_quip(3, 4, 6, q.data(), 1.0f, d.data(), U, V); }),
            "make_quip: 6 columns of 3-bit codes take 3 bytes per row, as 4-bit codes do: a checkpoint could "
            "not tell the widths apart");
  EXPECT_EQ(test::error_of([&] { make_quip(4, 4, 6, q.data(), 1.0f, d.data(), U, V); }),
            "make_quip: 6 columns of 4-bit codes take 3 bytes per row, as 3-bit codes do: a checkpoint could "
            "not tell the widths apart");
  auto w2 = make_quip(2, 4, 6, q.data(), 1.0f, d.data(), U, V);
  Stored stored = stored_tensors(*w2);
  EXPECT_EQ(as_quip(*read_back(stored, 4, 6)).bits, 2);
  std::vector<uint8_t> three(4 * 3, 0x49);
  stored["quip_codes"].data = three.data();
  stored["quip_codes"].shape = {4, 3};
  stored["quip_codes"].nbytes = three.size();
  EXPECT_EQ(test::error_of([&] { read_back(stored, 4, 6, "f.safetensors: L"); }),
            "f.safetensors: L.quip_codes rows have 3 bytes, as 6 columns of 3 or 4 bits do: the bit width is "
            "ambiguous");
  // Widths 7.. read back whatever their bit width.
  for (int64_t cols : {8, 10, 12, 14, 20, 28})
    for (int bits : {2, 3, 4}) {
      SCOPED_TRACE(::testing::Message() << cols << " " << bits);
      const test::RandomQuip p = test::random_quip(bits, 4, cols, RotationKind::Kronecker, rng);
      EXPECT_EQ(as_quip(*read_back(stored_tensors(*p.w), 4, cols)).bits, bits);
    }
}

// Tensors built by hand for a (rows, cols) linear of `bits` with rotation kind `kind`.
struct HandMade {
  std::vector<uint8_t> codes;
  float scale = 0.5f;
  std::vector<float> d;
  int64_t meta[3];
  Stored stored;
  HandMade(int64_t rows, int64_t cols, int bits, int64_t kind)
      : codes(size_t(rows * ((cols * bits + 7) / 8)), 0x5a), d(size_t(cols), 1.5f), meta{kind, 11, 12} {
    stored["quip_codes"] = view(DType::U8, {rows, (cols * bits + 7) / 8}, codes.data());
    stored["quip_scale"] = view(DType::F32, {1}, &scale);
    stored["quip_d"] = view(DType::F32, {cols}, d.data());
    stored["quip_meta"] = view(DType::I64, {3}, meta);
  }
  static TensorView view(DType dt, std::vector<int64_t> shape, const void* data) {
    TensorView t;
    t.dtype = dt;
    t.shape = std::move(shape);
    t.data = data;
    t.nbytes = size_t(t.numel()) * dtype_size(dt);
    return t;
  }
};

TEST(QuipFormat, MalformedTensorsGiveOneLineErrorsNamingTheTensor) {
  std::mt19937 rng(5);
  const test::RandomQuip p = test::random_quip(2, 6, 40, RotationKind::Kronecker, rng);  // rows of 10 bytes
  const Stored ok = stored_tensors(*p.w);
  auto error = [&](const Stored& stored, int64_t rows = 6, int64_t cols = 40) {
    return test::error_of([&] { read_back(stored, rows, cols, "f.safetensors: L"); });
  };
  auto with = [&](const char* name, TensorView t) {
    Stored s = ok;
    s[name] = t;
    return s;
  };
  auto drop = [&](const char* name) {
    Stored s = ok;
    s.erase(name);
    return s;
  };
  EXPECT_EQ(error(ok), "(no error)");
  for (const char* name : {"quip_codes", "quip_scale", "quip_d", "quip_meta"})
    EXPECT_EQ(error(drop(name)), std::string("f.safetensors: L.") + name +
                                     ": missing (the quip format needs quip_codes, quip_scale, quip_d and "
                                     "quip_meta)");
  EXPECT_EQ(error(ok, 0, 40), "f.safetensors: L: bad shape (0, 40)");
  EXPECT_EQ(error(ok, 6, -1), "f.safetensors: L: bad shape (6, -1)");
  // quip_codes
  EXPECT_EQ(error(ok, 12), "f.safetensors: L.quip_codes is (6, 10), expected (12, row bytes)");
  TensorView t = ok.at("quip_codes");
  t.shape = {60};
  EXPECT_EQ(error(with("quip_codes", t)), "f.safetensors: L.quip_codes is (60), expected (6, row bytes)");
  t.shape = {6, 10, 1};
  EXPECT_EQ(error(with("quip_codes", t)),
            "f.safetensors: L.quip_codes is (6, 10, 1), expected (6, row bytes)");
  t.shape = {6, 11};
  EXPECT_EQ(error(with("quip_codes", t)),
            "f.safetensors: L.quip_codes rows have 11 bytes: not 2, 3 or 4 bits for 40 columns");
  t.shape = {6, 5};  // 1 bit
  EXPECT_EQ(error(with("quip_codes", t)),
            "f.safetensors: L.quip_codes rows have 5 bytes: not 2, 3 or 4 bits for 40 columns");
  EXPECT_EQ(error(ok, 6, 41),
            "f.safetensors: L.quip_codes rows have 10 bytes: not 2, 3 or 4 bits for 41 columns");
  t = ok.at("quip_codes");
  t.dtype = DType::I8;
  EXPECT_EQ(error(with("quip_codes", t)), "f.safetensors: L.quip_codes is I8 (6, 10), expected U8 (6, 10)");
  // quip_scale
  t = ok.at("quip_scale");
  t.dtype = DType::F16;
  EXPECT_EQ(error(with("quip_scale", t)), "f.safetensors: L.quip_scale is F16 (1), expected F32 (1)");
  t = ok.at("quip_scale");
  t.shape = {};
  EXPECT_EQ(error(with("quip_scale", t)), "f.safetensors: L.quip_scale is F32 (), expected F32 (1)");
  t.shape = {1, 1};
  EXPECT_EQ(error(with("quip_scale", t)), "f.safetensors: L.quip_scale is F32 (1, 1), expected F32 (1)");
  // quip_d
  t = ok.at("quip_d");
  t.dtype = DType::F64;
  EXPECT_EQ(error(with("quip_d", t)), "f.safetensors: L.quip_d is F64 (40), expected F32 (40)");
  t = ok.at("quip_d");
  t.shape = {39};
  EXPECT_EQ(error(with("quip_d", t)), "f.safetensors: L.quip_d is F32 (39), expected F32 (40)");
  t.shape = {1, 40};
  EXPECT_EQ(error(with("quip_d", t)), "f.safetensors: L.quip_d is F32 (1, 40), expected F32 (40)");
  // quip_meta
  t = ok.at("quip_meta");
  t.dtype = DType::I32;
  EXPECT_EQ(error(with("quip_meta", t)), "f.safetensors: L.quip_meta is I32 (3), expected I64 (3)");
  t = ok.at("quip_meta");
  t.shape = {2};
  EXPECT_EQ(error(with("quip_meta", t)), "f.safetensors: L.quip_meta is I64 (2), expected I64 (3)");

  // Values: a non-positive or non-finite scale or d entry, an unknown rotation kind.
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (const auto& [v, text] : std::vector<std::pair<float, std::string>>{
           {0.0f, "0"}, {-0.0f, "-0"}, {-1.5f, "-1.5"}, {nan, "nan"}, {inf, "inf"}, {-inf, "-inf"}}) {
    HandMade h(6, 40, 2, 0);
    h.scale = v;
    EXPECT_EQ(error(h.stored), "f.safetensors: L.quip_scale is " + text + ", not a positive number");
    HandMade g(6, 40, 2, 0);
    g.d[17] = v;
    EXPECT_EQ(error(g.stored), "f.safetensors: L.quip_d[17] is " + text + ", not a positive number");
  }
  for (int64_t kind : {int64_t(2), int64_t(-1), int64_t(1) << 40}) {
    HandMade h(6, 40, 2, kind);
    EXPECT_EQ(error(h.stored), "f.safetensors: L.quip_meta names rotation kind " + std::to_string(kind) +
                                   ", not 0 (kronecker) or 1 (hadamard)");
  }
  // Widths the stored kind cannot rotate: the error names the side.
  HandMade had_rows(6, 40, 2, 1);  // 6 has no Hadamard rotation, 40 = 2·20 has
  EXPECT_EQ(error(had_rows.stored),
            "f.safetensors: L (rows): width 6 is not 2^k·m with m in {1, 12, 20, 28}, so it has no Hadamard "
            "rotation (use --rotation kronecker)");
  HandMade had_cols(4, 36, 2, 1);
  EXPECT_EQ(error(had_cols.stored, 4, 36),
            "f.safetensors: L (columns): width 36 is not 2^k·m with m in {1, 12, 20, 28}, so it has no "
            "Hadamard rotation (use --rotation kronecker)");
  HandMade kron_rows(7, 40, 2, 0);
  EXPECT_EQ(
      error(kron_rows.stored, 7, 40),
      "f.safetensors: L (rows): width 7 is prime, so it has no factorisation p1·p2 for QuIP's Kronecker "
      "rotation (use --rotation hadamard if it is 2^k·12/20/28, or leave this model to another method)");
  HandMade kron_cols(6, 4099, 4, 0);
  EXPECT_EQ(error(kron_cols.stored, 6, 4099).rfind("f.safetensors: L (columns): width 4099 is prime, so", 0),
            0u);
  HandMade fine(4, 40, 3, 1);
  EXPECT_EQ(error(fine.stored, 4, 40), "(no error)");
  EXPECT_EQ(as_quip(*read_back(fine.stored, 4, 40)).bits, 3);
}

// An independent dense Ŵ = Uᵀ·Ŵ′·V·diag(1/d): the dense U and V (checked against their definitions above),
// the f32 Ŵ′ of quip_rotated_rows (checked above against the codes), two matrix products in double.
TEST(QuipFormat, ReferenceDequantizerIsTheDenseProduct) {
  std::mt19937 rng(6);
  for (const Shape& s : kShapes)
    for (int bits : {2, 4}) {
      SCOPED_TRACE(::testing::Message()
                   << rotation_kind_name(s.kind) << " " << s.rows << "x" << s.cols << " " << bits);
      const test::RandomQuip p = test::random_quip(bits, s.rows, s.cols, s.kind, rng);
      const QuipWeight& w = *p.w;
      const int64_t rows = s.rows, cols = s.cols;
      const std::vector<double> U = dense_rotation(*w.U), V = dense_rotation(*w.V);
      std::vector<float> wq(size_t(rows * cols));
      quip_rotated_rows(w, 0, rows, wq.data());
      std::vector<double> T(size_t(rows * cols), 0.0), Ta(T.size(), 0.0);  // Uᵀ·Ŵ′ and |U|ᵀ·|Ŵ′|
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = 0; k < rows; ++k) {
          const double u = U[size_t(k * rows + r)];
          for (int64_t c = 0; c < cols; ++c) {
            T[size_t(r * cols + c)] += u * double(wq[size_t(k * cols + c)]);
            Ta[size_t(r * cols + c)] += std::fabs(u) * std::fabs(double(wq[size_t(k * cols + c)]));
          }
        }
      std::vector<float> ref(size_t(rows * cols), NAN);
      quip_dequantize_rows_ref(w, 0, rows, ref.data());
      const double tol = 2 * gamma_d(rows + cols + rotation_roundings(*w.V) + 2), u32 = std::ldexp(1.0, -24);
      double scale_of_w = 0;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          double want = 0, mag = 0;
          for (int64_t k = 0; k < cols; ++k) {
            want += T[size_t(r * cols + k)] * V[size_t(k * cols + c)];
            mag += Ta[size_t(r * cols + k)] * std::fabs(V[size_t(k * cols + c)]);
          }
          want /= double(w.d[c]);
          mag /= double(w.d[c]);
          scale_of_w = std::max(scale_of_w, std::fabs(want));
          ASSERT_LE(std::fabs(double(ref[size_t(r * cols + c)]) - want), u32 * std::fabs(want) + tol * mag)
              << r << " " << c;
        }
      EXPECT_GT(scale_of_w, 0);
      // A row range in the middle is the same rows.
      if (rows >= 3) {
        std::vector<float> mid(size_t(2 * cols));
        quip_dequantize_rows_ref(w, 1, 2, mid.data());
        EXPECT_EQ(std::memcmp(mid.data(), ref.data() + cols, mid.size() * 4), 0);
      }
    }
}

// tools/make_fuzz_seeds.py's quip seeds for fuzz/packed_linear_fuzz are valid weights, read the way the fuzz
// target reads them.
TEST(QuipFormat, FuzzSeedsLoad) {
  const auto dir = std::filesystem::path(__FILE__).parent_path() / "../../fuzz/corpus/packed_linear";
  int seeds = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("quip_", 0) != 0) continue;
    SCOPED_TRACE(e.path().string());
    std::ifstream f(e.path(), std::ios::binary);
    const std::vector<uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    ASSERT_GT(data.size(), 2u);
    const int64_t cols = 1 + (int64_t(data[0]) | int64_t(data[1]) << 8) % 4096;
    SafetensorsFile st = parse_safetensors_bytes(data.data() + 2, data.size() - 2, "seed");
    auto get = [&](std::string_view suffix) -> const TensorView* {
      auto it = st.tensors.find("L." + std::string(suffix));
      return it == st.tensors.end() ? nullptr : &it->second;
    };
    ASSERT_TRUE(get("quip_codes"));
    const int64_t rows = get("quip_codes")->shape[0];
    auto w = quip_format().from_tensors(get, rows, cols, "seed");
    std::vector<float> out(size_t(rows * cols));
    quip_format().dequantize_ref(*w, 0, rows, out.data());
    for (float v : out) ASSERT_TRUE(std::isfinite(v));
    ++seeds;
  }
  EXPECT_EQ(seeds, 3);
}

}  // namespace
}  // namespace lowbit

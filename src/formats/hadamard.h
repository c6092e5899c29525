// Hadamard transforms for incoherence processing (QuIP#, Tseng et al. 2024; QuaRot, Ashkboos et al. 2024):
// an orthogonal rotation that spreads a weight row's (or an activation's) outliers over all its entries and
// costs O(n log n) instead of the dense random orthogonal matrix's O(n²). The randomized transform is
// H_n·diag(s) with random signs s ∈ {±1}ⁿ; the signs are the caller's, applied before this one.
//
// Definition (the layout every kernel follows). A length n = 2^k·m with m ∈ {1, 12, 20, 28} (hadamard_base)
// is indexed i = a·m + b, a ∈ [0, 2^k), b ∈ [0, m), and
//     H_n = (1/√n) · (H_{2^k} ⊗ H_m),   (H_{2^k} ⊗ H_m)[a·m + b][a'·m + b'] = H_{2^k}[a][a'] · H_m[b][b']
// with H_{2^k} the Sylvester (Walsh–Hadamard, natural order) matrix, H_{2^k}[a][a'] = (−1)^popcount(a & a'),
// and H_m the ±1 matrix of hadamard_matrix (H_1 = [1]). H_n is orthogonal, so the transpose is the inverse.
// H_{2^k} is symmetric, H_12 and H_20 (Paley I) are not, H_28 (Paley II) is; H_nᵀ = (1/√n)·(H_{2^k} ⊗ H_mᵀ).
//
// The entries of H_12, H_20, H_28 are this file's own Paley constructions (hadamard.cpp): any Hadamard matrix
// gives an equally incoherent rotation, but not the same numbers as another library's tables, so a rotation
// stored by QuIP#/QuaRot code is not reproduced by this one.
#pragma once
#include <cstdint>

namespace lowbit {

// m such that n = 2^k·m with m ∈ {1, 12, 20, 28}: 1 when n is a power of two, else 12, 20 or 28 when n with
// its factors 2 removed is 3, 5 or 7 and 4·that divides n; 0 when n has no such form (1000, 6 = 2·3, 36).
// Errors on n < 1.
int64_t hadamard_base(int64_t n);

// The m×m ±1 Hadamard matrix (row-major, H·Hᵀ = m·I) for m ∈ {1, 12, 20, 28}, built once; errors on any other
// m (powers of two above 1 are the Sylvester part, never a table).
const int8_t* hadamard_matrix(int m);

// x (n) ← H_n·x, or H_nᵀ·x when transpose, in f32 (the reference every SIMD kernel is tested against):
// 1. the Walsh–Hadamard butterflies over a, strides h·m for h = 1, 2, 4, ..., 2^(k−1) in that order, each
//    pair (u, v) becoming (u + v, u − v) (k roundings per element);
// 2. for each a, the dense product y_b = Σ_{b'} H_m[b][b']·x_{b'} (H_m[b'][b] when transpose) summed from
//    0.0f in b' = 0, 1, ..., m−1 order (the ±1 products are exact: m roundings; skipped when m = 1);
// 3. every element times s = (float)(1/√n) (1/√n computed in double and rounded to f32 once), one f32
//    multiply: the only place the scale enters.
// Errors when hadamard_base(n) == 0. T = double runs the same steps in double (the quantizer's rotation).
template <class T>
void hadamard_ref(T* x, int64_t n, bool transpose);

}  // namespace lowbit

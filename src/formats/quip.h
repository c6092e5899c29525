// QuIP's incoherence-processed weights (Chee, Cai, Kuleshov, De Sa 2023, "QuIP: 2-Bit Quantization of Large
// Language Models With Guarantees", §4 "incoherence processing", Alg. 1-2), stored as they are quantized: the
// b-bit codes of the rotated weight W′ = U·(W·diag(d))·Vᵀ, its one scale, the column rescaling d, and the
// rotations' seeds. The dense weight is never written: a product runs as
//     y = Uᵀ·(Ŵ′·(V·(x ⊘ d))),      Ŵ′[r][c] = s·(2·q[r][c] − maxq) / maxq,  maxq = 2^b − 1
// (upstream's grid ((q / maxq)·2 − 1)·s of quantize_weight_vecbal, qfn 'b'), so Ŵ = Uᵀ·Ŵ′·V·diag(1/d).
//
// U (rows × rows) and V (cols × cols) are random orthogonal matrices regenerated from (kind, width, seed):
//  * kronecker (QuIP §4 "efficient incoherence processing": a Kronecker product of two small random
//    orthogonal matrices, with upstream's factorisation and permutations, method.py butterfly_factors and
//    mul_ortho_butterfly): n = p1·p2 from the sorted prime factors of n (p1 the product of those at even
//    positions, p2 at odd ones: 4096 → 64·64, 14336 → 64·224, 384 → 16·24); R = P_out·(A ⊗ B)·P_in with A
//    (p1×p1) and B (p2×p2) Haar-random special-orthogonal and (P x)[i] = x[perm[i]]. Viewing x as a (p1, p2)
//    matrix X (x[k·p2 + j] = X[k][j]), (A ⊗ B)·x is A·X·Bᵀ: O(n·(p1 + p2)) work, p1² + p2² numbers.
//    (Upstream's code draws an independent block for every one of the n/p1 and n/p2 slices instead; that
//    costs n·(p1 + p2) numbers per rotation, as many bytes as the 2-bit weight it rotates, and the paper's
//    guarantee (Lemma 5) is stated for the Kronecker product.)
//  * hadamard (QuIP#/QuaRot's randomized Hadamard transform): R = H_n·diag(σ)/√n with random signs σ.
// The rotations are drawn with lowbit's counter-based generator (core/rng.h), not torch's: the same seed
// gives the same rotation on every machine, and a checkpoint stores only its seeds.
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "formats/affine.h"
#include "formats/format.h"

namespace lowbit {

enum class RotationKind : int { Kronecker = 0, Hadamard = 1 };
std::string_view rotation_kind_name(RotationKind k);  // "kronecker", "hadamard"

// A random orthogonal n×n matrix R in structured form. Blocks are f32: the values the kernels multiply by
// are exactly the ones the quantizer rotated with (converted to double there).
struct Rotation {
  RotationKind kind = RotationKind::Kronecker;
  int64_t n = 0;
  uint64_t seed = 0;
  // kronecker
  int64_t p1 = 0, p2 = 0;
  std::vector<int32_t> perm_in, perm_out;  // (n)
  std::vector<float> a;                    // (p1, p1) row-major
  std::vector<float> b, bt;                // (p2, p2) row-major, and Bᵀ (the kernels read rows of either)
  // hadamard
  int64_t had_m = 0;         // n = 2^k · had_m (formats/hadamard.h)
  std::vector<float> signs;  // (n) ±1
};

// upstream's butterfly_factors: (p1, p2). p2 == 1 when n is 1 or prime.
std::pair<int64_t, int64_t> butterfly_factors(int64_t n);

// The rotation of kind `kind` for width n from `seed`. Throws a one-line error naming `what` when n has no
// usable factorisation for the kind (a prime width for the Kronecker product; not 2^k·{1, 12, 20, 28} for
// Hadamard).
std::shared_ptr<const Rotation> make_rotation(RotationKind kind, int64_t n, uint64_t seed,
                                              std::string_view what);

// x (n) ← R·x, or Rᵀ·x when transpose; scalar, in T arithmetic (float or double): the reference the SIMD
// kernels are tested against, and the quantizer's rotation (in double).
template <class T>
void rotate_ref(const Rotation& r, T* x, bool transpose);

// The format's entry in the format table: "quip". In a checkpoint, for a linear "P":
//   P.quip_codes  U8   (rows, row_bytes)   b-bit codes of W′, LSB-first bitstream per row (as affine's)
//   P.quip_scale  F32  (1)                 s
//   P.quip_d      F32  (cols)              d (> 0)
//   P.quip_meta   I64  (3)                 rotation kind, U's seed, V's seed
// bits = row_bytes·8 / cols (2..4): the only record of the width, so make_quip and from_tensors refuse the
// widths of fewer than 7 columns where two bit widths pack a row into as many bytes.
const Format& quip_format();

struct QuipWeight final : PackedWeight {
  int bits = 2;
  const uint8_t* codes = nullptr;        // (rows, row_bytes())
  float scale = 0;                       // s
  const float* d = nullptr;              // (cols)
  int64_t meta[3] = {0, 0, 0};           // as stored: rotation kind, U's seed, V's seed (bit patterns)
  std::shared_ptr<const Rotation> U, V;  // regenerated from the seeds
  // Ŵ′ as an affine weight (scale 1, zero (maxq − 1)/2 per row, the same code bytes): Ŵ′ = S·(A − ½) with
  // S = 2s/maxq, so the affine kernels do the packed product in the middle.
  AffineWeight centred;
  // What lowbit derived and owns whatever `owner` is (a spilled or loaded weight's owner is its mapping): the
  // copy of d and the centred view's rows (and the codes, for a weight made by make_quip).
  std::shared_ptr<const void> derived;

  int maxq() const { return (1 << bits) - 1; }
  size_t row_bytes() const { return (size_t(cols) * size_t(bits) + 7) / 8; }
  // codes, plus s (32 bits) and d (32 per column) and the meta (3·64) per matrix.
  double bits_per_weight() const {
    return (double(row_bytes()) * 8 * double(rows) + 32.0 + 32.0 * double(cols) + 192.0) /
           (double(rows) * double(cols));
  }
  const Format& format() const override { return quip_format(); }
};

const QuipWeight& as_quip(const PackedWeight& w);

// An owned weight from codes (rows, cols) in [0, maxq], s, d (cols) and the two rotations (their widths rows
// and cols; same kind). Builds `centred`.
std::shared_ptr<QuipWeight> make_quip(int bits, int64_t rows, int64_t cols, const uint8_t* codes, float scale,
                                      const float* d, std::shared_ptr<const Rotation> U,
                                      std::shared_ptr<const Rotation> V);

// Ŵ′ rows [r0, r0 + nr) (the rotated weight) into out (nr, cols): s·(2q − maxq)/maxq in f32.
void quip_rotated_rows(const QuipWeight& w, int64_t r0, int64_t nr, float* out);

// The reference dequantizer: rows [r0, r0 + nr) of Ŵ = Uᵀ·Ŵ′·V·diag(1/d), in double, scalar. Builds the
// rows of Uᵀ it needs from unit vectors, so it costs O(nr·rows·cols): for tests and small models.
void quip_dequantize_rows_ref(const QuipWeight& w, int64_t r0, int64_t nr, float* out);

}  // namespace lowbit

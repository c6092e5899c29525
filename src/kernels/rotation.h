// Applying the structured random rotations of formats/quip.h to rows of activations: QuIP's incoherence
// processing at inference (y = Uᵀ·(Ŵ′·(V·(x ⊘ d)))) without a dense rotation matrix.
#pragma once
#include <cstdint>

#include "formats/quip.h"

namespace lowbit {

// Each of the `count` rows of x (count, r.n), in place: x_t ← R·x_t, or Rᵀ·x_t when transpose. Highway SIMD
// on the best target; rows shared out across threads when there is enough work (each row's arithmetic is
// the same whatever thread does it).
void rotate_rows(const Rotation& r, float* x, int64_t count, bool transpose);
// Its scalar twin: rotate_ref<float> row by row (the test oracle).
void rotate_rows_scalar(const Rotation& r, float* x, int64_t count, bool transpose);

}  // namespace lowbit

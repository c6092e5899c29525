#include "kernels/hadamard.h"

#include "core/error.h"
#include "formats/hadamard.h"

namespace lowbit {

void hadamard_rows_scalar(float* x, int64_t count, int64_t n, bool transpose) {
  if (count < 0) fail("hadamard_rows_scalar: {} rows", count);
  if (hadamard_base(n) == 0) fail("hadamard_rows_scalar: length {} is not 2^k, 12·2^k, 20·2^k or 28·2^k", n);
  for (int64_t r = 0; r < count; ++r) hadamard_ref(x + r * n, n, transpose);
}

}  // namespace lowbit

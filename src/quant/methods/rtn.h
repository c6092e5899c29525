// Round-to-nearest (RTN) weight quantization: every weight independently, with the primitive of
// quant/primitives.h — the baseline of GPTQ (Frantar et al. 2022, §5 "RTN") and AWQ (Lin et al. 2023).
#pragma once
#include <cstdint>
#include <memory>

#include "formats/affine.h"
#include "quant/method.h"
#include "quant/primitives.h"

namespace lowbit {

// Where (S, Z) are shared: one pair for the whole tensor, per output channel (row), or per group of
// `group_size` consecutive input columns of a row.
enum class Granularity { Tensor, Channel, Group };

// Quantizes W (rows, cols) into the packed format. Per-tensor parameters are stored replicated on every row
// (the format's groups are per row). fake, when given, receives Ŵ (rows, cols) — bit-identical to
// dequantizing the result.
std::shared_ptr<const AffineWeight> quantize_rtn(const float* w, int64_t rows, int64_t cols,
                                                 const QuantSpec& spec, Granularity gran,
                                                 int64_t group_size = kPerChannel, float* fake = nullptr);

// The registry entry (quant/method.h).
const Method& rtn_method();

}  // namespace lowbit

#include "formats/nf4.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace lowbit {

namespace {

// torch.linspace(start, end, steps)[idx] in f32 as PyTorch's current CPU kernel is written
// (aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp, linspace_kernel): the first half counts up from start,
// the second half down from end, with step = (end − start)/(steps − 1) in f32, every product and sum rounded.
// The map is only as fixed as that: PyTorch 1.13's vectorised kernel gives 44 of the 256 entries another last
// bit or two, and a build of the current kernel that contracts step·i + start into an FMA 42 (measured with
// tools/ref_nf4.py); a double-quantized scale moves by at most that much.
float torch_linspace(float start, float end, int64_t steps, int64_t idx) {
  const float step = (end - start) / float(steps - 1);
  return idx < steps / 2 ? start + rounded_product(step, float(idx))
                         : end - rounded_product(step, float(steps - idx - 1));
}

std::array<float, 256> make_dynamic_map() {
  // create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): no "additional items" (2^(7−7) − 1 =
  // 0); for exponent i = 0..6, the 2^i midpoints of linspace(0.1, 1, 2^i + 1) times 10^(i − 6), both signs
  // (254 values); then 0 and 1; sorted. Each step is an f32 tensor operation there: the midpoint
  // (b[k] + b[k+1]) / 2.0 and the product with the Python float 10^(i − 6), which PyTorch rounds to f32
  // first.
  std::vector<float> v;
  for (int i = 0; i < 7; ++i) {
    const int64_t steps = (int64_t(1) << i) + 1;
    const float scale = float(std::pow(10.0, double(i - 6)));
    for (int64_t k = 0; k + 1 < steps; ++k) {
      const float mid =
          (torch_linspace(0.1f, 1.0f, steps, k) + torch_linspace(0.1f, 1.0f, steps, k + 1)) / 2.0f;
      v.push_back(scale * mid);
      v.push_back(-scale * mid);
    }
  }
  v.push_back(0.0f);
  v.push_back(1.0f);
  LOWBIT_ASSERT(v.size() == 256);
  std::sort(v.begin(), v.end());
  std::array<float, 256> out;
  std::copy(v.begin(), v.end(), out.begin());
  return out;
}

}  // namespace

const std::array<float, 256>& dynamic_map() {
  static const std::array<float, 256> m = make_dynamic_map();
  return m;
}

uint8_t dynamic_map_code(float x) {
  // bitsandbytes csrc/kernels.cu dQuantize<STOCHASTIC=0>, step for step (the bracketing entries start as
  // ±1 and become map[0] / map[255] only when the search never moved off that end).
  const std::array<float, 256>& code = dynamic_map();
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f;
  float val = code[size_t(pivot)];
  for (int i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[size_t(pivot)];
  }
  if (upper_pivot == 255) upper = code[255];
  if (lower_pivot == 0) lower = code[0];
  if (x > val) {
    const float midpoint = (upper + val) * 0.5f;
    return uint8_t(x > midpoint ? upper_pivot : pivot);
  }
  const float midpoint = (lower + val) * 0.5f;
  return uint8_t(x < midpoint ? lower_pivot : pivot);
}

uint8_t dynamic_map_nearest(float x) {
  // IR-QLoRA utils.py quantize_tensor: torch.argmin(|X − L|) over the 256 entries, in f32. argmin returns the
  // first minimum, and the first NaN when there is one (x NaN: index 0).
  const std::array<float, 256>& m = dynamic_map();
  size_t best = 0;
  float best_d = std::fabs(x - m[0]);
  for (size_t i = 1; i < 256; ++i) {
    const float d = std::fabs(x - m[i]);
    if (d < best_d) best = i, best_d = d;
  }
  return uint8_t(best);
}

void nf4_scaled_values(const float* a, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i)
    for (int k = 0; k < 16; ++k) out[16 * i + k] = kNf4Values[k] * a[i];
}

namespace {

// out[i] = map[q[i]]·scale2[(b0 + i)/256], each product rounded to f32; out of line so that a caller's later
// sum cannot be fused with it (see rounded_product).
[[gnu::noinline]] void map_products(const uint8_t* q, const float* scale2, int64_t b0, int64_t n,
                                    float* out) {
  const std::array<float, 256>& m = dynamic_map();
  for (int64_t i = 0; i < n; ++i) out[i] = m[q[b0 + i]] * scale2[(b0 + i) / kNf4SuperBlock];
}

}  // namespace

void Nf4Weight::block_scales(int64_t b0, int64_t n, float* a, float* t) const {
  if (absmax_q) {
    map_products(absmax_q, absmax2, b0, n, a);
    for (int64_t i = 0; i < n; ++i) a[i] = a[i] + absmax_offset;
  } else {
    std::copy(absmax + b0, absmax + b0 + n, a);
  }
  if (tau_q) map_products(tau_q, tau2, b0, n, t);
}

void check_nf4_weight(const Nf4Weight& w, std::string_view what) {
  if (w.rows <= 0 || w.cols <= 0) fail("{}: bad shape ({}, {})", what, w.rows, w.cols);
  if (w.cols % kNf4Block != 0)
    fail("{}: nf4 needs in_features to be a multiple of {} (blocks of {} weights within a row), not {}", what,
         kNf4Block, kNf4Block, w.cols);
  if (!w.codes) fail("{}: missing codes", what);
  if (w.double_quant() == (w.absmax != nullptr))
    fail("{}: needs either absmax or double-quantized absmax (absmax_q, absmax2), not {}", what,
         w.absmax ? "both" : "neither");
  if (w.double_quant() && !w.absmax2) fail("{}: double-quantized absmax without absmax2", what);
  if ((w.tau_q != nullptr) != (w.tau2 != nullptr)) fail("{}: ICQ needs both tau_q and tau2", what);
}

const Nf4Weight& as_nf4(const PackedWeight& w) {
  LOWBIT_ASSERT(&w.format() == &nf4_format());
  return static_cast<const Nf4Weight&>(w);
}

void nf4_dequantize_rows_scalar(const Nf4Weight& w, int64_t r0, int64_t nr, float* out) {
  const int64_t per_row = w.cols / kNf4Block;
  for (int64_t r = r0; r < r0 + nr; ++r) {
    const uint8_t* row = w.codes + size_t(r) * w.row_bytes();
    float* o = out + (r - r0) * w.cols;
    for (int64_t j = 0; j < per_row; ++j) {
      float values[16];
      w.block_values(r * per_row + j, values);
      for (int64_t c = j * kNf4Block; c < (j + 1) * kNf4Block; ++c) o[c] = values[nf4_packed_code(row, c)];
    }
  }
}

namespace {

std::vector<FormatTensor> nf4_tensors(const PackedWeight& pw) {
  const Nf4Weight& w = as_nf4(pw);
  const int64_t nb = w.nblocks(), ns = w.nsuper();
  std::vector<FormatTensor> out = {
      {"nf4_codes", format_tensor(DType::U8, {w.rows, int64_t(w.row_bytes())}, w.codes)}};
  if (w.double_quant()) {
    out.push_back({"nf4_absmax_q", format_tensor(DType::U8, {nb}, w.absmax_q)});
    out.push_back({"nf4_absmax2", format_tensor(DType::F32, {ns}, w.absmax2)});
    out.push_back({"nf4_absmax_offset", format_tensor(DType::F32, {}, &w.absmax_offset)});
  } else {
    out.push_back({"nf4_absmax", format_tensor(DType::F32, {nb}, w.absmax)});
  }
  if (w.icq()) {
    out.push_back({"nf4_tau_q", format_tensor(DType::U8, {nb}, w.tau_q)});
    out.push_back({"nf4_tau2", format_tensor(DType::F32, {ns}, w.tau2)});
  }
  return out;
}

// The F32 tensor's values, finite, in memory aligned for float: the tensor itself, or a copy in `copy` when a
// safetensors file placed it at an odd offset.
const float* finite_f32(const TensorView& t, std::vector<float>& copy, const std::string& what,
                        const char* suffix) {
  const float* p = t.as<float>();
  if (reinterpret_cast<uintptr_t>(t.data) % alignof(float) != 0) {
    copy.resize(size_t(t.numel()));
    std::memcpy(copy.data(), t.data, copy.size() * sizeof(float));
    p = copy.data();
  }
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(p[i])) fail("{}.{}[{}] = {} is not finite", what, suffix, i, p[i]);
  return p;
}

std::shared_ptr<PackedWeight> nf4_from_tensors(const TensorLookup& get, int64_t rows, int64_t cols,
                                               const std::string& what) {
  if (rows <= 0 || cols <= 0) fail("{}: bad shape ({}, {})", what, rows, cols);
  if (cols % kNf4Block != 0)
    fail("{}: nf4 needs in_features to be a multiple of {}, not {}", what, kNf4Block, cols);
  const int64_t nb = rows * cols / kNf4Block, ns = (nb + kNf4SuperBlock - 1) / kNf4SuperBlock;
  auto expect = [&](const char* suffix, DType dt, std::vector<int64_t> shape) -> const TensorView& {
    const TensorView* t = get(suffix);
    if (!t) fail("{}.{}: missing", what, suffix);
    if (t->dtype != dt || t->shape != shape)
      fail("{}.{} is {} {}, expected {} {}", what, suffix, dtype_name(t->dtype), shape_str(t->shape),
           dtype_name(dt), shape_str(shape));
    return *t;
  };
  auto q = std::make_shared<Nf4Weight>();
  q->rows = rows, q->cols = cols;
  q->codes = expect("nf4_codes", DType::U8, {rows, cols / 2}).as<uint8_t>();
  struct Copies {
    std::vector<float> absmax, absmax2, tau2;
  };
  auto copies = std::make_shared<Copies>();
  const bool dq = get("nf4_absmax_q") != nullptr, plain = get("nf4_absmax") != nullptr;
  if (dq == plain)
    fail("{}: needs either nf4_absmax or nf4_absmax_q (double quantization), not {}", what,
         dq ? "both" : "neither");
  if (dq) {
    q->absmax_q = expect("nf4_absmax_q", DType::U8, {nb}).as<uint8_t>();
    q->absmax2 = finite_f32(expect("nf4_absmax2", DType::F32, {ns}), copies->absmax2, what, "nf4_absmax2");
    const TensorView& off = expect("nf4_absmax_offset", DType::F32, {});
    std::memcpy(&q->absmax_offset, off.data, sizeof(float));
    if (!std::isfinite(q->absmax_offset))
      fail("{}.nf4_absmax_offset = {} is not finite", what, q->absmax_offset);
  } else {
    q->absmax = finite_f32(expect("nf4_absmax", DType::F32, {nb}), copies->absmax, what, "nf4_absmax");
  }
  const bool has_tq = get("nf4_tau_q") != nullptr, has_t2 = get("nf4_tau2") != nullptr;
  if (has_tq != has_t2) fail("{}: ICQ needs both nf4_tau_q and nf4_tau2", what);
  if (has_tq) {
    q->tau_q = expect("nf4_tau_q", DType::U8, {nb}).as<uint8_t>();
    q->tau2 = finite_f32(expect("nf4_tau2", DType::F32, {ns}), copies->tau2, what, "nf4_tau2");
  }
  if (!copies->absmax.empty() || !copies->absmax2.empty() || !copies->tau2.empty()) q->owner = copies;
  return q;
}

}  // namespace

const Format& nf4_format() {
  static const Format f = [] {
    Format f;
    f.name = "nf4";
    f.summary =
        "4-bit NormalFloat (bitsandbytes nf4, blocks of 64) with f32 or double-quantized absmax, optional "
        "IR-QLoRA ICQ shift per block";
    f.marker_suffix = "nf4_codes";
    f.bits_per_weight = [](const PackedWeight& w) { return as_nf4(w).bits_per_weight(); };
    f.dequantize_ref = [](const PackedWeight& w, int64_t r0, int64_t nr, float* out) {
      nf4_dequantize_rows_scalar(as_nf4(w), r0, nr, out);
    };
    f.tensors = nf4_tensors;
    f.from_tensors = nf4_from_tensors;
    return f;
  }();
  return f;
}

}  // namespace lowbit

#include "formats/pbllm.h"

#include <bit>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace lowbit {

namespace {

void check_pbllm_shape(int64_t rows, int64_t cols, int64_t gs, std::string_view what) {
  if (rows <= 0 || cols <= 0) fail("{}: bad shape ({}, {})", what, rows, cols);
  if (gs <= 0 || gs % 32 != 0 || gs > kPbllmMaxGroup || cols % gs != 0)
    fail("{}: pbllm group size {} must be a multiple of 32, at most {}, dividing the {} input columns", what,
         gs, kPbllmMaxGroup, cols);
}

// The buffers lowbit owns (PbllmWeight::derived): all of them for a new weight; for a loaded one, the derived
// ones (row_start, the position list of a bitmap file, the bitmap when it is the smaller encoding) and copies
// of misaligned tensors.
struct PbllmStorage {
  std::vector<uint8_t> signs, pos, values, bitmap;
  std::vector<uint16_t> binpar, counts;
  std::vector<float> rowpar;
  std::vector<int64_t> row_start;
};

// row_start from counts, and the bitmap when it is the smaller encoding (what the file gets).
void derive(PbllmWeight& w, PbllmStorage& st) {
  const int64_t G = w.n_groups();
  st.row_start.assign(size_t(w.rows + 1), 0);
  for (int64_t r = 0; r < w.rows; ++r) {
    int64_t n = 0;
    for (int64_t g = 0; g < G; ++g) n += w.counts[r * G + g];
    st.row_start[size_t(r + 1)] = st.row_start[size_t(r)] + n;
  }
  w.row_start = st.row_start.data();
  w.nnz = st.row_start.back();
  if (w.bitmap_smaller() && st.bitmap.empty()) {
    st.bitmap.assign(size_t(w.rows) * w.row_bytes(), 0);
    for (int64_t r = 0; r < w.rows; ++r) {
      uint8_t* b = st.bitmap.data() + size_t(r) * w.row_bytes();
      int64_t k = w.row_start[r];
      for (int64_t g = 0; g < G; ++g)
        for (int64_t i = 0; i < w.counts[r * G + g]; ++i, ++k) {
          const int64_t c = g * w.group_size + w.pos[k];
          b[c / 8] |= uint8_t(1u << (c % 8));
        }
    }
  }
}

std::shared_ptr<PbllmWeight> owned(int64_t rows, int64_t cols, int64_t gs, std::shared_ptr<PbllmStorage> st) {
  auto w = std::make_shared<PbllmWeight>();
  w->rows = rows, w->cols = cols, w->group_size = gs;
  w->signs = st->signs.data();
  w->binpar = st->binpar.data();
  w->rowpar = st->rowpar.data();
  w->counts = st->counts.data();
  w->pos = st->pos.data();
  w->values = st->values.data();
  derive(*w, *st);
  w->owner = st;
  w->derived = std::move(st);
  return w;
}

const uint8_t* bitmap_of(const PbllmWeight& w) {
  return static_cast<const PbllmStorage*>(w.derived.get())->bitmap.data();
}

}  // namespace

bool PbllmWeight::bitmap_smaller() const {
  return double(rows) * double(cols) <= 8.0 * double(nnz) + 16.0 * double(rows) * double(n_groups());
}

double PbllmWeight::bits_per_weight() const {
  const double n = double(rows) * double(cols), G = double(n_groups());
  const double mask = std::min(n, 8.0 * double(nnz) + 16.0 * double(rows) * G);
  return (n + mask + 8.0 * double(nnz) + 32.0 * double(rows) * G + 64.0 * double(rows)) / n;
}

const PbllmWeight& as_pbllm(const PackedWeight& w) {
  LOWBIT_ASSERT(&w.format() == &pbllm_format());
  return static_cast<const PbllmWeight&>(w);
}

void check_pbllm_weight(const PbllmWeight& w, std::string_view what) {
  check_pbllm_shape(w.rows, w.cols, w.group_size, what);
  if (!w.signs || !w.binpar || !w.rowpar || !w.counts || !w.row_start || (w.nnz > 0 && (!w.pos || !w.values)))
    fail("{}: missing pbllm buffers", what);
}

void pbllm_dequantize_rows_scalar(const PbllmWeight& w, int64_t r0, int64_t nr, float* out) {
  const int64_t G = w.n_groups(), gs = w.group_size;
  for (int64_t r = r0; r < r0 + nr; ++r) {
    const uint8_t* sg = w.signs + size_t(r) * w.row_bytes();
    float* o = out + (r - r0) * w.cols;
    for (int64_t g = 0; g < G; ++g) {
      const float mu = f16_to_f32(w.binpar[2 * (r * G + g)]), a = f16_to_f32(w.binpar[2 * (r * G + g) + 1]);
      for (int64_t c = g * gs; c < (g + 1) * gs; ++c) o[c] = mu + (plane_bit(sg, c) ? a : -a);
    }
    const float S = w.rowpar[2 * r], Z = w.rowpar[2 * r + 1];
    int64_t k = w.row_start[r];
    for (int64_t g = 0; g < G; ++g)
      for (int64_t i = 0; i < w.counts[r * G + g]; ++i, ++k)
        o[g * gs + w.pos[k]] = S * (float(w.values[k]) - Z);
  }
}

std::shared_ptr<PbllmWeight> make_pbllm(int64_t rows, int64_t cols, int64_t gs, const uint8_t* salient,
                                        const uint8_t* sign, const uint8_t* codes, const float* mu,
                                        const float* alpha, const float* S, const float* Z) {
  check_pbllm_shape(rows, cols, gs, "make_pbllm");
  const int64_t G = cols / gs;
  auto st = std::make_shared<PbllmStorage>();
  st->signs.assign(size_t(rows * cols / 8), 0);
  st->counts.assign(size_t(rows * G), 0);
  st->binpar.resize(size_t(2 * rows * G));
  st->rowpar.resize(size_t(2 * rows));
  for (int64_t r = 0; r < rows; ++r) {
    st->rowpar[size_t(2 * r)] = S[r];
    st->rowpar[size_t(2 * r + 1)] = Z[r];
    for (int64_t g = 0; g < G; ++g) {
      for (int k = 0; k < 2; ++k) {
        const float v = (k == 0 ? mu : alpha)[r * G + g];
        const uint16_t h = f32_to_f16(v);
        if (!std::isfinite(f16_to_f32(h)))
          fail("make_pbllm: {} of row {} group {} is {}, {}", k == 0 ? "mu" : "alpha", r, g, v,
               std::isfinite(v) ? "which overflows fp16" : "not finite");
        st->binpar[size_t(2 * (r * G + g) + k)] = h;
      }
      for (int64_t c = g * gs; c < (g + 1) * gs; ++c) {
        const size_t i = size_t(r * cols + c);
        if (salient[i]) {
          st->pos.push_back(uint8_t(c - g * gs));
          st->values.push_back(codes[i]);
          ++st->counts[size_t(r * G + g)];
        } else if (sign[i]) {
          st->signs[i / 8] |= uint8_t(1u << (i % 8));
        }
      }
    }
  }
  return owned(rows, cols, gs, std::move(st));
}

namespace {

std::vector<FormatTensor> pbllm_tensors(const PackedWeight& pw) {
  const PbllmWeight& w = as_pbllm(pw);
  const int64_t rb = int64_t(w.row_bytes()), G = w.n_groups();
  std::vector<FormatTensor> t = {{"pb_signs", format_tensor(DType::U8, {w.rows, rb}, w.signs)},
                                 {"pb_binpar", format_tensor(DType::F16, {w.rows, 2 * G}, w.binpar)},
                                 {"pb_rowpar", format_tensor(DType::F32, {w.rows, 2}, w.rowpar)},
                                 {"pb_values", format_tensor(DType::U8, {w.nnz}, w.values)}};
  if (w.bitmap_smaller()) {
    t.push_back({"pb_bitmap", format_tensor(DType::U8, {w.rows, rb}, bitmap_of(w))});
  } else {
    t.push_back({"pb_pos", format_tensor(DType::U8, {w.nnz}, w.pos)});
    t.push_back({"pb_counts", format_tensor(DType::I16, {w.rows, G}, w.counts)});
  }
  return t;
}

// An aligned pointer to a tensor's elements: the view itself, or a copy kept in `keep`.
template <class T>
const T* aligned(const TensorView& t, std::vector<T>& keep) {
  if (reinterpret_cast<uintptr_t>(t.data) % alignof(T) == 0) return t.as<T>();
  keep.resize(size_t(t.numel()));
  std::memcpy(keep.data(), t.data, keep.size() * sizeof(T));
  return keep.data();
}

std::shared_ptr<PackedWeight> pbllm_from_tensors(const TensorLookup& get, int64_t rows, int64_t cols,
                                                 const std::string& what) {
  if (rows <= 0 || cols <= 0 || cols % 32 != 0)
    fail("{}: pbllm needs a shape (rows, cols) with cols a multiple of 32, not ({}, {})", what, rows, cols);
  auto need = [&](const char* suffix) -> const TensorView& {
    const TensorView* t = get(suffix);
    if (!t)
      fail(
          "{}.{}: missing (the pbllm format needs pb_signs, pb_binpar, pb_rowpar, pb_values and pb_bitmap or "
          "pb_pos + pb_counts)",
          what, suffix);
    return *t;
  };
  const TensorView& sg = need("pb_signs");
  const TensorView& bp = need("pb_binpar");
  const TensorView& rp = need("pb_rowpar");
  const TensorView& vals = need("pb_values");
  const TensorView *bm = get("pb_bitmap"), *ps = get("pb_pos"), *cn = get("pb_counts");
  if (bool(bm) == (ps || cn))
    fail("{}: pbllm needs either pb_bitmap or both pb_pos and pb_counts, not {}", what,
         bm ? "both encodings" : "neither");
  if (!bm && !(ps && cn))
    fail("{}.{}: missing (pb_pos and pb_counts go together)", what, ps ? "pb_counts" : "pb_pos");
  if (bp.shape.size() != 2 || bp.shape[1] <= 0 || bp.shape[1] % 2 != 0 || cols % (bp.shape[1] / 2) != 0)
    fail("{}.pb_binpar has shape {}, not (rows, 2·groups) with the groups dividing {} columns", what,
         shape_str(bp.shape), cols);
  const int64_t G = bp.shape[1] / 2, gs = cols / G;
  check_pbllm_shape(rows, cols, gs, what + ".pb_binpar");
  expect_tensor(sg, what, "pb_signs", DType::U8, {rows, cols / 8});
  expect_tensor(bp, what, "pb_binpar", DType::F16, {rows, 2 * G});
  expect_tensor(rp, what, "pb_rowpar", DType::F32, {rows, 2});
  if (vals.dtype != DType::U8 || vals.shape.size() != 1)
    fail("{}.pb_values is {} {}, expected U8 (nnz)", what, dtype_name(vals.dtype), shape_str(vals.shape));
  const int64_t nnz = vals.shape[0];

  auto st = std::make_shared<PbllmStorage>();
  auto w = std::make_shared<PbllmWeight>();
  w->rows = rows, w->cols = cols, w->group_size = gs;
  w->signs = sg.as<uint8_t>();
  w->values = vals.as<uint8_t>();
  w->binpar = aligned(bp, st->binpar);
  w->rowpar = aligned(rp, st->rowpar);
  const size_t rb = size_t(cols / 8);
  if (bm) {
    expect_tensor(*bm, what, "pb_bitmap", DType::U8, {rows, cols / 8});
    const uint8_t* b = bm->as<uint8_t>();
    int64_t ones = 0;
    for (size_t i = 0; i < size_t(rows) * rb; ++i) {
      ones += std::popcount(unsigned(b[i]));
      if (b[i] & w->signs[i])
        fail("{}.pb_signs: a sign bit is set at a salient position (byte {} of the bitmap)", what, i);
    }
    if (ones != nnz) fail("{}.pb_bitmap marks {} salient weights but pb_values has {}", what, ones, nnz);
    st->bitmap.assign(b, b + size_t(rows) * rb);  // kept for saving (views must outlive the file otherwise)
    st->counts.assign(size_t(rows * G), 0);
    st->pos.reserve(size_t(nnz));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        if (plane_bit(b + size_t(r) * rb, c)) {
          st->pos.push_back(uint8_t(c % gs));
          ++st->counts[size_t(r * G + c / gs)];
        }
    w->counts = st->counts.data();
    w->pos = st->pos.data();
  } else {
    if (ps->dtype != DType::U8 || ps->shape != std::vector<int64_t>{nnz})
      fail("{}.pb_pos is {} {}, expected U8 ({}) like pb_values", what, dtype_name(ps->dtype),
           shape_str(ps->shape), nnz);
    expect_tensor(*cn, what, "pb_counts", DType::I16, {rows, G});
    w->counts = aligned(*cn, st->counts);
    w->pos = ps->as<uint8_t>();
    int64_t k = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < G; ++g) {
        const int64_t n = w->counts[r * G + g];
        if (n > gs || k + n > nnz)
          fail("{}.pb_counts: row {} group {} claims {} salient weights ({} in all so far, pb_values has {})",
               what, r, g, n, k + n, nnz);
        for (int64_t i = 0; i < n; ++i, ++k) {
          const int64_t p = w->pos[k];
          if (p >= gs || (i > 0 && p <= w->pos[k - 1]))
            fail("{}.pb_pos: entry {} (row {} group {}) is {}: positions must ascend within a group of {}",
                 what, k, r, g, p, gs);
          const int64_t c = g * gs + p;
          if (plane_bit(w->signs + size_t(r) * rb, c))
            fail("{}.pb_signs: the sign bit of salient weight (row {}, column {}) is set", what, r, c);
        }
      }
    if (k != nnz) fail("{}.pb_counts sum to {} salient weights but pb_values has {}", what, k, nnz);
  }
  derive(*w, *st);
  w->derived = std::move(st);  // the caller sets owner (the mapping the views point into)
  return w;
}

}  // namespace

const Format& pbllm_format() {
  static const Format f = [] {
    Format f;
    f.name = "pbllm";
    f.summary =
        "PB-LLM partial binarization: a sign plane with fp16 (mu, alpha) per (row, group), salient weights "
        "as "
        "8-bit codes on a per-row grid with their positions (bitmap or position list, whichever is smaller)";
    f.marker_suffix = "pb_signs";
    f.bits_per_weight = [](const PackedWeight& w) { return as_pbllm(w).bits_per_weight(); };
    f.dequantize_ref = [](const PackedWeight& w, int64_t r0, int64_t nr, float* out) {
      pbllm_dequantize_rows_scalar(as_pbllm(w), r0, nr, out);
    };
    f.tensors = pbllm_tensors;
    f.from_tensors = pbllm_from_tensors;
    return f;
  }();
  return f;
}

}  // namespace lowbit

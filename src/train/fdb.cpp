#include "train/fdb.h"

#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel.h"
#include "quant/methods/rtn.h"

namespace lowbit {

namespace {

bool bit(const uint8_t* plane, int64_t c) {
  return (plane[c / 8] >> (c % 8)) & 1;
}

}  // namespace

FdbLinear::FdbLinear(const std::vector<float>& w, int64_t rows, int64_t cols, int64_t group)
    : latent(w), rows_(rows), cols_(cols), group_(group) {
  LOWBIT_ASSERT(int64_t(w.size()) == rows * cols);
  if (group <= 0 || cols % group != 0 || group % 8 != 0)
    fail("db-llm: group {} must be a multiple of 8 dividing in_features {}", group, cols);
  QuantSpec spec;
  spec.bits = 2;
  const auto rtn = quantize_rtn(w.data(), rows, cols, spec, Granularity::Group, group);
  const std::shared_ptr<DualBinWeight> init = dualbin_from_affine(*rtn);
  const int64_t G = n_groups();
  alpha1.resize(size_t(rows * G));
  alpha2.resize(size_t(rows * G));
  b1.resize(size_t(rows * cols));
  b2.resize(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < G; ++g) {
      alpha1[size_t(r * G + g)] = f16_to_f32(init->scales[(r * G + g) * 2]);
      alpha2[size_t(r * G + g)] = f16_to_f32(init->scales[(r * G + g) * 2 + 1]);
    }
    const uint8_t* p1 = init->plane1 + r * (cols / 8);
    const uint8_t* p2 = init->plane2 + r * (cols / 8);
    for (int64_t c = 0; c < cols; ++c) {
      b1[size_t(r * cols + c)] = bit(p1, c);
      b2[size_t(r * cols + c)] = bit(p2, c);
    }
  }
  d_latent.assign(latent.size(), 0.0f);
  d_alpha1.assign(alpha1.size(), 0.0f);
  d_alpha2.assign(alpha2.size(), 0.0f);
}

void FdbLinear::weight(float* w_hat) const {
  const int64_t G = n_groups();
  parallel_for(
      rows_,
      [&](int64_t r) {
        for (int64_t c = 0; c < cols_; ++c) {
          const size_t i = size_t(r * cols_ + c), g = size_t(r * G + c / group_);
          w_hat[i] = (b1[i] ? alpha1[g] : 0.0f) + (b2[i] ? alpha2[g] : 0.0f);
        }
      },
      16, true);
}

void FdbLinear::backward(const float* d_w_hat) {
  const int64_t G = n_groups();
  parallel_for(
      rows_,
      [&](int64_t r) {
        for (int64_t g = 0; g < G; ++g) {
          double s1 = 0, s2 = 0;  // in column order: deterministic
          for (int64_t c = g * group_; c < (g + 1) * group_; ++c) {
            const size_t i = size_t(r * cols_ + c);
            d_latent[i] += d_w_hat[i];  // straight-through
            if (b1[i]) s1 += d_w_hat[i];
            if (b2[i]) s2 += d_w_hat[i];
          }
          d_alpha1[size_t(r * G + g)] += float(s1);
          d_alpha2[size_t(r * G + g)] += float(s2);
        }
      },
      16, true);
}

void FdbLinear::refresh() {
  const int64_t G = n_groups();
  parallel_for(
      rows_,
      [&](int64_t r) {
        for (int64_t c = 0; c < cols_; ++c) {
          const size_t i = size_t(r * cols_ + c), g = size_t(r * G + c / group_);
          const float w = latent[i], x1 = alpha1[g], x2 = alpha2[g];
          // eq. 6: b1 picks the pair {α1, α1+α2} or {0, α2} by the midpoint between the pairs' inner levels;
          // eq. 7: b2 then picks within the pair by its midpoint.
          const float t1 = w - (x1 + x2) * 0.5f;
          const uint8_t v1 = (x1 >= 0 ? t1 : -t1) >= 0;
          const float t2 = w - (v1 ? x1 : 0.0f) - x2 * 0.5f;
          b1[i] = v1;
          b2[i] = (x2 >= 0 ? t2 : -t2) >= 0;
        }
      },
      16, true);
}

std::shared_ptr<DualBinWeight> FdbLinear::pack() const {
  // make_dualbin rounds α to fp16 (an overflow is its one-line error).
  return make_dualbin(rows_, cols_, group_, b1.data(), b2.data(), alpha1.data(), alpha2.data());
}

}  // namespace lowbit

#include "quant/activations.h"

#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "core/mmap.h"

namespace lowbit {

ActStorage parse_act_storage(const std::string& s) {
  if (s == "f32") return ActStorage::F32;
  if (s == "bf16") return ActStorage::BF16;
  if (s == "disk") return ActStorage::Disk;
  fail("calibration activations '{}' is not one of f32, bf16, disk", s);
}

Activations::Activations(int n_, int T_, int d_, ActStorage storage, std::string spill_dir)
    : n(n_), T(T_), d(d_), storage_(storage), spill_dir_(std::move(spill_dir)) {
  const size_t total = size_t(n) * window_size();
  if (storage_ == ActStorage::F32) {
    f32_.assign(total, 0.0f);
  } else if (storage_ == ActStorage::BF16) {
    bf16_.assign(total, 0);
  } else {
    spill_ = std::make_shared<ScratchFile>(spill_dir_, uint64_t(total) * sizeof(float));  // reads as zeros
  }
}

Activations::Activations(const Activations& o)
    : n(o.n), T(o.T), d(o.d), storage_(o.storage_), spill_dir_(o.spill_dir_), f32_(o.f32_), bf16_(o.bf16_) {
  if (o.spill_) {
    *this = o.like();
    std::vector<float> w(window_size());
    for (int i = 0; i < n; ++i) o.load(i, w.data()), store(i, w.data());
  }
}

Activations& Activations::operator=(const Activations& o) {
  if (this != &o) *this = Activations(o);
  return *this;
}

void Activations::load(int i, float* dst) const {
  LOWBIT_ASSERT(i >= 0 && i < n);
  const size_t w = window_size(), off = size_t(i) * w;
  if (storage_ == ActStorage::F32)
    std::memcpy(dst, f32_.data() + off, w * sizeof(float));
  else if (storage_ == ActStorage::BF16)
    for (size_t k = 0; k < w; ++k) dst[k] = bf16_to_f32(bf16_[off + k]);
  else
    spill_->read(uint64_t(off) * sizeof(float), dst, w * sizeof(float));
}

void Activations::store(int i, const float* src) {
  LOWBIT_ASSERT(i >= 0 && i < n);
  const size_t w = window_size(), off = size_t(i) * w;
  if (storage_ == ActStorage::F32)
    std::memcpy(f32_.data() + off, src, w * sizeof(float));
  else if (storage_ == ActStorage::BF16)
    for (size_t k = 0; k < w; ++k) bf16_[off + k] = f32_to_bf16(src[k]);
  else
    spill_->write(uint64_t(off) * sizeof(float), src, w * sizeof(float));
}

std::vector<float> Activations::all() const {
  std::vector<float> out(size_t(n) * window_size());
  for (int i = 0; i < n; ++i) load(i, out.data() + size_t(i) * window_size());
  return out;
}

}  // namespace lowbit

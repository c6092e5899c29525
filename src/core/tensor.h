// A typed, shaped view of bytes owned elsewhere (an mmap or a buffer held by a Checkpoint).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace lowbit {

struct TensorView {
  DType dtype = DType::F32;
  std::vector<int64_t>
      shape;  // PyTorch order, outermost first: a linear weight is (out_features, in_features)
  const void* data = nullptr;
  size_t nbytes = 0;
  std::string source;  // file it came from, for error messages

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data);
  }
};

std::string shape_str(const std::vector<int64_t>& shape);  // "(384, 1024)"

}  // namespace lowbit

// Storage formats as a table, in the spirit of ggml's type traits: each packed format of a linear weight
// declares its tensors in a checkpoint, its exact bits per weight, a scalar reference dequantizer, and how it
// is read back from (and written to) a checkpoint's tensors. The compute kernels of a format, per backend,
// are the kernels layer's table (kernels/format_kernels.h), as ggml keeps its CPU traits apart from the type
// traits. A new format is one file pair here (formats/<name>.{h,cpp}) plus one line in formats/format.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace lowbit {

struct Format;

// A linear weight W (rows = out_features, cols = in_features) in some packed format. Each format's struct
// derives from this and adds its own buffers (views; `owner` keeps them alive: a buffer or a mapping).
struct PackedWeight {
  int64_t rows = 0;  // out_features
  int64_t cols = 0;  // in_features
  std::shared_ptr<const void> owner;

  virtual ~PackedWeight() = default;
  virtual const Format& format() const = 0;
};

// One stored tensor of a packed weight: "<linear>.<suffix>" in a checkpoint.
struct FormatTensor {
  std::string suffix;  // "qcodes"
  TensorView view;
};

// Looks a tensor of the linear up by suffix; null when the checkpoint does not have it.
using TensorLookup = std::function<const TensorView*(std::string_view suffix)>;

struct Format {
  std::string name;  // "affine": what quantization_config names per linear
  std::string summary;
  // The tensor that marks a linear as stored in this format (present exactly when it is).
  std::string marker_suffix;
  // Storage bits per weight, counting every code, scale, zero, mask and index.
  double (*bits_per_weight)(const PackedWeight& w) = nullptr;
  // The scalar reference dequantizer (the oracle every kernel is tested against): rows [r0, r0 + nr) of Ŵ
  // into out (nr, cols).
  void (*dequantize_ref)(const PackedWeight& w, int64_t r0, int64_t nr, float* out) = nullptr;
  // Views of w's buffers under their suffixes, for saving (w must outlive them).
  std::vector<FormatTensor> (*tensors)(const PackedWeight& w) = nullptr;
  // The weight of shape (rows, cols) from a checkpoint's tensors, fully validated (a malformed file gives a
  // one-line error naming `what`, never an out-of-bounds read later). Views where the tensors are aligned for
  // their element type; a misaligned one is copied, and the weight's owner keeps the copy (callers that
  // replace owner must only do so for data they aligned themselves, as spilling does).
  std::shared_ptr<PackedWeight> (*from_tensors)(const TensorLookup& get, int64_t rows, int64_t cols,
                                                const std::string& what) = nullptr;
};

// Bit c of a packed bit-plane row, LSB-first (bit c % 8 of byte c / 8): the layout of every bit-plane format
// (dualbin, pbllm).
inline bool plane_bit(const uint8_t* row, int64_t c) {
  return (row[c / 8] >> (c % 8)) & 1;
}

// The view of a format's buffer under its checkpoint suffix (Format::tensors).
TensorView format_tensor(DType dt, std::vector<int64_t> shape, const void* data);
// Throws "<what>.<suffix> is U8 (3, 4), expected U8 (3, 5)" unless t has that dtype and shape (from_tensors).
void expect_tensor(const TensorView& t, const std::string& what, const char* suffix, DType dt,
                   const std::vector<int64_t>& shape);

// Every format, in registration order.
const std::vector<const Format*>& packed_formats();
// The format named `name`, or null.
const Format* find_format(std::string_view name);

// w as a T (a format's struct), or null if it is another format.
template <class T>
const T* packed_as(const PackedWeight* w) {
  return dynamic_cast<const T*>(w);
}

}  // namespace lowbit

// libFuzzer target for the packed-linear loader (io/packed_tensors.h, each format's from_tensors): a
// safetensors file whose tensors claim to be a packed linear "L" of any registered format. lowbit::Error is
// the expected outcome for bad input; a weight that loads is then dequantized whole by the format's reference
// dequantizer, so a validation gap shows up as an out-of-bounds read under ASan.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "formats/format.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  // The first two bytes choose the linear's in_features (the shapes of the tensors give the rest).
  const int64_t cols = 1 + (int64_t(data[0]) | int64_t(data[1]) << 8) % 4096;
  try {
    lowbit::SafetensorsFile f = lowbit::parse_safetensors_bytes(data + 2, size - 2, "fuzz.safetensors");
    auto get = [&](std::string_view suffix) -> const lowbit::TensorView* {
      auto it = f.tensors.find("L." + std::string(suffix));
      return it == f.tensors.end() ? nullptr : &it->second;
    };
    for (const lowbit::Format* fmt : lowbit::packed_formats()) {
      const lowbit::TensorView* marker = get(fmt->marker_suffix);
      if (!marker || marker->shape.empty() || marker->shape[0] <= 0 || marker->shape[0] > 4096) continue;
      const int64_t rows = marker->shape[0];
      try {
        auto w = fmt->from_tensors(get, rows, cols, "fuzz.safetensors: L");
        std::vector<float> out(static_cast<size_t>(cols));
        // QuIP's reference builds each row from the whole matrix (O(rows·cols) per row): its first and last.
        const bool whole = fmt->name == "quip";
        for (int64_t r = 0; r < rows; r += whole && rows > 1 ? rows - 1 : 1)
          fmt->dequantize_ref(*w, r, 1, out.data());
        volatile double bits = fmt->bits_per_weight(*w);
        (void)bits;
      } catch (const lowbit::Error&) {
      }
    }
  } catch (const lowbit::Error&) {
  }
  return 0;
}

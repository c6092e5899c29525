// libFuzzer target for the safetensors parser. lowbit::Error is the expected outcome for bad input; anything
// else (a crash, a sanitizer report, another exception) is a bug.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    lowbit::SafetensorsFile f = lowbit::parse_safetensors_bytes(data, size, "fuzz.safetensors");
    // Read every byte every view claims: ASan reports a view that reaches outside the input.
    uint8_t acc = 0;
    for (const auto& [name, t] : f.tensors) {
      const auto* p = static_cast<const uint8_t*>(t.data);
      for (size_t i = 0; i < t.nbytes; ++i) acc ^= p[i];
      if (size_t(t.numel()) * lowbit::dtype_size(t.dtype) != t.nbytes) __builtin_trap();
    }
    volatile uint8_t sink = acc;
    (void)sink;
  } catch (const lowbit::Error&) {
  }
  return 0;
}

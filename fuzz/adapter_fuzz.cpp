// libFuzzer target: a LoRA adapter's adapter_config.json (PEFT's LoraConfig plus lowbit's object) must parse
// to a config or throw lowbit::Error; never crash, hang or read out of bounds. (The adapter's weights are a
// safetensors file: safetensors_fuzz.)
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "train/peft.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const lowbit::AdapterFile f = lowbit::parse_adapter_config(text, "fuzz/adapter_config.json");
    if (f.config.rank <= 0) __builtin_trap();  // validated
  } catch (const lowbit::Error&) {
  }
  return 0;
}

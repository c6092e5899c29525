// libFuzzer target: tokenizer.json parsing (and, when it loads, encode/decode of a few strings) must either
// work or throw lowbit::Error, never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "io/bpe_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    auto tok = lowbit::load_bpe_json_tokenizer_from_text(text, "fuzz/tokenizer.json");
    for (std::string_view s : {std::string_view("Hello world, it's 2024!\n\n  x"),
                               std::string_view("ab<X>\xff\xc3"), text.substr(0, 64)}) {
      auto ids = tok->encode(s);
      tok->decode(ids);
    }
  } catch (const lowbit::Error&) {
  }
  return 0;
}

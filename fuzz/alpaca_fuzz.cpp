// libFuzzer target: Alpaca data (JSON array or JSON Lines) must either give records, and from them examples
// whose labels line up with their tokens, or throw lowbit::Error; never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "train/data.h"

namespace {

// One id per byte, so that every record reaches the caps and label code without a tokenizer file.
struct ByteTokenizer : lowbit::Tokenizer {
  ByteTokenizer() {
    bos_id = 1;
    eos_ids = {2};
  }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    for (unsigned char c : text) ids.push_back(int32_t(c) + 3);
    return ids;
  }
  std::string decode(std::span<const int32_t>) const override { return ""; }
  int32_t vocab_size() const override { return 259; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto records = lowbit::parse_alpaca(text, "fuzz/alpaca.jsonl");
    static const ByteTokenizer tok;
    lowbit::AlpacaOptions opt;
    opt.source_max_len = 64;
    opt.target_max_len = 16;
    opt.train_on_source = size % 2 == 1;
    for (const auto& ex : lowbit::alpaca_examples(records, tok, opt)) {
      if (ex.labels.size() != ex.tokens.size() || ex.tokens.size() > 80 ||
          ex.labels.back() != lowbit::kIgnoreLabel)
        __builtin_trap();
      for (size_t t = 0; t + 1 < ex.tokens.size(); ++t)
        if (ex.labels[t] != lowbit::kIgnoreLabel && ex.labels[t] != ex.tokens[t + 1]) __builtin_trap();
    }
  } catch (const lowbit::Error&) {
  }
  return 0;
}

// libFuzzer target for the GGUF reader, the llama mapping on top of it and its tokenizer. lowbit::Error is
// the expected outcome for bad input; anything else (a crash, a sanitizer report, another exception) is a
// bug.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/error.h"
#include "io/gguf.h"
#include "io/score_bpe.h"

namespace {

uint8_t touch(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint8_t acc = 0;
  for (size_t i = 0; i < n; ++i) acc ^= p[i];
  return acc;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lowbit;
  std::shared_ptr<const GgufFile> f;
  try {
    f = std::make_shared<const GgufFile>(data, size, "fuzz.gguf");
  } catch (const Error&) {
    return 0;
  }
  uint8_t acc = 0;
  for (const auto& [k, v] : f->metadata()) acc ^= uint8_t(v.summary().size());
  for (const GgufTensorInfo& t : f->tensors()) acc ^= touch(data + t.file_offset, t.nbytes);
  try {
    Checkpoint c = gguf_to_checkpoint(f);
    for (const auto& [name, t] : c.tensors) acc ^= touch(t.data, t.nbytes);
    validate_llama_tensors(c);
  } catch (const Error&) {
  }
  try {
    auto tok = gguf_score_tokenizer(*f);
    auto ids = tok->encode("Once upon a time, \xC3\xA9\xFF");
    acc ^= uint8_t(tok->decode(ids).size());
  } catch (const Error&) {
  }
  volatile uint8_t sink = acc;
  (void)sink;
  return 0;
}

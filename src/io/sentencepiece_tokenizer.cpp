// SentencePiece tokenizer.model (LLaMA / LLaMA-2) through the SentencePiece library. encode() is the library's
// EncodeAsIds: with the model's add_dummy_prefix it prepends the "▁" itself, which is what HF's
// LlamaTokenizer(use_fast=False, legacy=True) does for text without special-token strings.
#include <sentencepiece_processor.h>

#include <filesystem>

#include "core/error.h"
#include "core/mmap.h"
#include "io/tokenizer.h"

namespace lowbit {

namespace {

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
    std::string bytes = read_file(path);  // names the file when it is missing or unreadable
    auto st = sp_.LoadFromSerializedProto(bytes);
    if (!st.ok()) fail("{}: not a SentencePiece model: {}", path, one_line(std::string(st.message())));
    if (sp_.GetPieceSize() <= 0) fail("{}: SentencePiece model has no pieces", path);
    bos_id = sp_.bos_id();
    if (sp_.eos_id() >= 0) eos_ids = {sp_.eos_id()};
  }

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    auto st = sp_.Encode(text, &ids);
    if (!st.ok()) fail("{}: SentencePiece encode failed: {}", path_, one_line(std::string(st.message())));
    return std::vector<int32_t>(ids.begin(), ids.end());
  }

  std::string decode(std::span<const int32_t> ids) const override {
    std::vector<int> keep;
    keep.reserve(ids.size());
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab_size())
        fail("{}: token id {} out of range (vocabulary size {})", path_, id, vocab_size());
      if (id != bos_id && !is_eos(id)) keep.push_back(id);
    }
    std::string out;
    auto st = sp_.Decode(keep, &out);
    if (!st.ok()) fail("{}: SentencePiece decode failed: {}", path_, one_line(std::string(st.message())));
    return out;
  }

  int32_t vocab_size() const override { return sp_.GetPieceSize(); }

  int32_t token_to_id(std::string_view text) const override {
    int id = sp_.PieceToId(text);
    if (id < 0 || id >= vocab_size() || sp_.IdToPiece(id) != text) return -1;  // unknown pieces map to <unk>
    return id;
  }

 private:
  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path) {
  auto tok = std::make_unique<SentencePieceTokenizer>(path);
  std::string dir = std::filesystem::path(path).parent_path().string();
  apply_tokenizer_config(*tok, dir.empty() ? "." : dir);
  return tok;
}

}  // namespace lowbit

// Byte-level BPE (GPT-2 / LLaMA-3 style): added tokens split out of the text, a pre-tokenizer regex (PCRE2),
// then per pre-token BPE merges by rank over raw bytes. Loaded from a HF tokenizers `tokenizer.json` or a
// tiktoken rank file; both end up in the same BpeTokenizer (vocabulary as raw bytes, merges as id pairs).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/tokenizer.h"

namespace lowbit {

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in byte
// order, so every byte has a visible code point. HF byte-level vocabularies are written in this alphabet.
char32_t byte_to_unicode(uint8_t b);
// Inverse of byte_to_unicode for one code point; -1 when it is not in the alphabet.
int unicode_to_byte(char32_t c);

// The LLaMA-3 pre-tokenizer pattern (Meta's llama3 tokenizer.py `pat_str`; the same string is in the Split
// pre-tokenizer of LLaMA-3's tokenizer.json).
extern const char* const kLlama3Pattern;

struct BpeSpec {
  std::string name;                 // file (or label) used in error messages
  std::vector<std::string> tokens;  // id -> raw bytes; empty = unused id
  struct Merge {
    int32_t left, right, result;
    uint32_t priority;  // lower merges first; ties go to the leftmost pair
  };
  std::vector<Merge> merges;
  std::string pattern;        // pre-tokenizer regex (PCRE2 syntax, compiled with UTF + UCP); empty = none
  bool ignore_merges = false;  // a pre-token that is itself a token is emitted whole (LLaMA-3, tiktoken)
  int32_t unk_id = -1;         // emitted for a byte that has no token; -1 = drop it (HF BPE without unk_token)
  struct Added {
    std::string content;
    int32_t id;
    bool special;
  };
  std::vector<Added> added;   // rendered by decode()
  bool parse_added_in_text = true;  // HF splits added-token strings out of the text; tiktoken (by default) not
};

class BpeTokenizer : public Tokenizer {
 public:
  // Validates the spec (ids in range, merges consistent, regex compiles); throws Error naming spec.name.
  explicit BpeTokenizer(BpeSpec spec);
  ~BpeTokenizer() override;

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return int32_t(tokens_.size()); }
  int32_t token_to_id(std::string_view text) const override;

  // BPE of one pre-token (no regex, no added tokens), appended to out. Exposed for tests.
  void bpe_piece(std::string_view piece, std::vector<int32_t>& out) const;

 private:
  struct Regex;
  struct MergeInfo {
    uint32_t priority;
    int32_t result;
  };
  struct StrHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  void encode_segment(std::string_view seg, std::vector<int32_t>& out, void* cache) const;

  std::string name_;
  std::vector<std::string> tokens_;  // id -> bytes (vocab and added tokens)
  std::vector<uint8_t> skip_in_decode_;
  std::unordered_map<std::string, int32_t, StrHash, std::equal_to<>> ids_;  // bytes -> id (vocab only)
  std::unordered_map<uint64_t, MergeInfo> merges_;                          // (left << 32 | right)
  int32_t byte_ids_[256];
  bool ignore_merges_;
  int32_t unk_id_;
  std::vector<BpeSpec::Added> added_;
  bool parse_added_;
  std::unique_ptr<Regex> regex_;
};

// tokenizer.json parsed from memory (`name` labels errors). BOS/EOS defaults: <|begin_of_text|> and
// <|end_of_text|>/<|eot_id|> when present among the added tokens; add_bos true.
std::unique_ptr<Tokenizer> load_bpe_json_tokenizer_from_text(std::string_view text, const std::string& name);

// Replaces invalid UTF-8 by U+FFFD, one per maximal invalid subpart (as Rust's String::from_utf8_lossy, which
// HF tokenizers' decode uses).
std::string utf8_lossy(std::string_view bytes);

}  // namespace lowbit

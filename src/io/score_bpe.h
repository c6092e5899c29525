// SentencePiece-style "BPE by piece score" tokenizer, the algorithm of llama2.c's run.c encode() (and of
// llama.cpp's SPM tokenizer): split the text into UTF-8 characters (each unknown character falls back to its
// <0xXX> byte pieces), then repeatedly merge the adjacent pair whose concatenation is a piece with the highest
// score, leftmost first among equal scores, until no adjacent pair forms a piece. Used for llama2.c tok*.bin and
// GGUF "llama" vocabularies. Implemented with a priority queue (O(n log n)); the order of merges, and therefore
// the result, is the same as run.c's quadratic rescan.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/tokenizer.h"

namespace lowbit {

// SentencePiece piece types (sentencepiece_model.proto; GGUF tokenizer.ggml.token_type uses the same numbers).
enum class PieceKind : uint8_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

struct ScoreVocab {
  std::vector<std::string> pieces;  // with spaces as ' ' (SentencePiece's U+2581 already replaced)
  std::vector<float> scores;
  std::vector<PieceKind> kinds;
};

class ScoreBpeTokenizer : public Tokenizer {
 public:
  // add_dummy_prefix: SentencePiece's option to encode " " + text (and drop that space again when decoding).
  // `source` names the vocabulary file in errors.
  ScoreBpeTokenizer(ScoreVocab vocab, bool add_dummy_prefix, std::string source);

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return int32_t(vocab_.pieces.size()); }
  int32_t token_to_id(std::string_view text) const;  // any kind of piece; -1 when absent
  const ScoreVocab& vocab() const { return vocab_; }

 private:
  ScoreVocab vocab_;
  bool add_dummy_prefix_;
  std::string source_;
  std::unordered_map<std::string, int32_t> mergeable_;  // Normal and UserDefined pieces: text -> id
  std::unordered_map<std::string, int32_t> all_;        // every piece: text -> first id
  int32_t byte_id_[256];                                // <0xXX> piece for each byte, -1 if absent
  std::vector<int16_t> byte_value_;                     // per id: the byte of a Byte piece, else -1
  int32_t unk_id_ = -1;
};

}  // namespace lowbit

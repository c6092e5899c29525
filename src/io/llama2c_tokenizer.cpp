// llama2.c tok*.bin (tokenizer.py export): int32 max_token_length, then per token: float score, int32 length,
// the UTF-8 bytes with SentencePiece's U+2581 already turned into ' ', BOS as "\n<s>\n" and EOS as "\n</s>\n".
// The vocabulary size is whatever the file holds.
#include <memory>

#include "core/error.h"
#include "core/mmap.h"
#include "io/byte_reader.h"
#include "io/score_bpe.h"
#include "io/tokenizer.h"

namespace lowbit {

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path) {
  MappedFile f(path);
  ByteReader r(f.data(), f.size(), path);
  int32_t max_len = r.read<int32_t>("max_token_length");
  if (max_len <= 0 || max_len > (1 << 20)) fail("{}: bad llama2.c tokenizer: max_token_length {}", path, max_len);
  ScoreVocab v;
  while (r.remaining() > 0) {
    size_t i = v.pieces.size();
    float score = r.read<float>("token score");
    int32_t len = r.read<int32_t>("token length");
    if (len < 0 || len > max_len)
      fail("{}: bad llama2.c tokenizer: token {} has length {} (max_token_length {})", path, i, len, max_len);
    std::string piece(r.read_bytes(uint64_t(len), "token bytes"));
    PieceKind kind = PieceKind::Normal;
    if (i == 0 && piece == "<unk>") kind = PieceKind::Unknown;
    if (i == 1 || i == 2) kind = PieceKind::Control;  // BOS, EOS
    if (piece.size() == 6 && piece.rfind("<0x", 0) == 0 && piece[5] == '>') kind = PieceKind::Byte;
    v.pieces.push_back(std::move(piece));
    v.scores.push_back(score);
    v.kinds.push_back(kind);
  }
  if (v.pieces.size() < 3) fail("{}: bad llama2.c tokenizer: only {} tokens (BOS 1 and EOS 2 needed)", path, v.pieces.size());
  auto tok = std::make_unique<ScoreBpeTokenizer>(std::move(v), true, path);
  tok->bos_id = 1;
  tok->eos_ids = {2};
  return tok;
}

}  // namespace lowbit

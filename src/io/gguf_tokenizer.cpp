// The tokenizer.ggml.* vocabulary of a GGUF file. Only the SentencePiece-style "llama" model is read here.
#include <memory>

#include "core/error.h"
#include "io/gguf.h"
#include "io/score_bpe.h"
#include "io/tokenizer.h"

namespace lowbit {

namespace {

// SentencePiece writes spaces as U+2581 (LOWER ONE EIGHTH BLOCK); the score tokenizer works on plain spaces.
std::string spaces_from_spm(const std::string& s) {
  static const std::string kSpm = "\xE2\x96\x81";
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, 3, kSpm) == 0) {
      out += ' ';
      i += 3;
    } else {
      out += s[i++];
    }
  }
  return out;
}

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& path) {
  GgufFile f(path);
  const std::string& model = f.get_string("tokenizer.ggml.model");
  if (model != "llama")
    fail("{}: tokenizer.ggml.model '{}' is not supported (only the SentencePiece-style 'llama')", path, model);
  ScoreVocab v;
  for (const std::string& t : f.get_string_array("tokenizer.ggml.tokens")) v.pieces.push_back(spaces_from_spm(t));
  const size_t n = v.pieces.size();
  if (n == 0) fail("{}: tokenizer.ggml.tokens is empty", path);
  v.scores = f.has("tokenizer.ggml.scores") ? f.get_f32_array("tokenizer.ggml.scores") : std::vector<float>(n, 0.0f);
  if (v.scores.size() != n)
    fail("{}: tokenizer.ggml.scores has {} entries for {} tokens", path, v.scores.size(), n);
  if (f.has("tokenizer.ggml.token_type")) {
    std::vector<int32_t> types = f.get_i32_array("tokenizer.ggml.token_type");
    if (types.size() != n) fail("{}: tokenizer.ggml.token_type has {} entries for {} tokens", path, types.size(), n);
    for (size_t i = 0; i < n; ++i) {
      if (types[i] < 1 || types[i] > 6) fail("{}: token {} has invalid token_type {}", path, i, types[i]);
      v.kinds.push_back(PieceKind(types[i]));
    }
  } else {
    v.kinds.assign(n, PieceKind::Normal);
  }
  bool prefix = f.has("tokenizer.ggml.add_space_prefix") ? f.get_bool("tokenizer.ggml.add_space_prefix") : true;
  auto id = [&](const char* key, int32_t def) {
    int64_t x = f.has(key) ? int64_t(f.get_u32(key)) : def;
    if (x >= int64_t(n)) fail("{}: {} {} is outside the vocabulary of {}", path, key, x, n);
    return int32_t(x);
  };
  int32_t bos = id("tokenizer.ggml.bos_token_id", 1), eos = id("tokenizer.ggml.eos_token_id", 2);
  auto tok = std::make_unique<ScoreBpeTokenizer>(std::move(v), prefix, path);
  tok->bos_id = bos;
  tok->eos_ids = {eos};
  if (f.has("tokenizer.ggml.add_bos_token")) tok->add_bos = f.get_bool("tokenizer.ggml.add_bos_token");
  return tok;
}

}  // namespace lowbit

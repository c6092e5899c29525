// Tokenizers behind one interface: SentencePiece (LLaMA/LLaMA-2 tokenizer.model), byte-level BPE (LLaMA-3
// tokenizer.json or tiktoken tokenizer.model), and the vocabularies inside GGUF and llama2.c's tok*.bin.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lowbit {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Text to ids without BOS/EOS.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Ids to text (special tokens rendered as their text, BOS/EOS dropped).
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  virtual int32_t vocab_size() const = 0;
  // Id of a token given as its text (e.g. "<s>", "<|eot_id|>"); -1 when there is no such token.
  virtual int32_t token_to_id(std::string_view text) const { return -1; }

  // [BOS] + encode(text) when add_bos (from tokenizer_config.json add_bos_token; default true).
  std::vector<int32_t> encode_with_bos(std::string_view text) const {
    std::vector<int32_t> ids;
    if (add_bos && bos_id >= 0) ids.push_back(bos_id);
    auto rest = encode(text);
    ids.insert(ids.end(), rest.begin(), rest.end());
    return ids;
  }
  bool is_eos(int32_t id) const {
    for (int32_t e : eos_ids)
      if (e == id) return true;
    return false;
  }

  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
  bool add_bos = true;
};

// tokenizer.model as a SentencePiece protobuf (LLaMA-2). Matches HF LlamaTokenizer(use_fast=False,
// legacy=True).
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path);
// LLaMA-3 tokenizer.json (HF tokenizers: byte-level BPE, pre-tokenizer regex, added tokens parsed in text).
std::unique_ptr<Tokenizer> load_bpe_json_tokenizer(const std::string& path);
// LLaMA-3 tiktoken rank file (base64 token + rank per line) + the 256 LLaMA-3 special tokens after the ranks.
std::unique_ptr<Tokenizer> load_tiktoken_tokenizer(const std::string& path);
// llama2.c tok*.bin (max_token_length, then per token: float score, int32 len, bytes).
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path);
// The tokenizer.ggml.* vocabulary of a GGUF file (model "llama": SentencePiece-style scores; "gpt2": BPE
// merges).
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& path);

// The tokenizer that belongs to a model path: for a directory, tokenizer.json if present else tokenizer.model
// (SentencePiece or tiktoken, detected by content), with BOS/EOS and add_bos from tokenizer_config.json /
// config.json; for *.gguf its vocabulary; for a llama2.c *.bin, tok<vocab>.bin or tokenizer.bin beside it.
std::unique_ptr<Tokenizer> load_tokenizer_for_model(const std::string& model_path);

// Applies tokenizer_config.json (add_bos_token, bos_token, eos_token) from `dir` when that file exists there.
void apply_tokenizer_config(Tokenizer& tok, const std::string& dir);
// Adds config.json's bos_token_id / eos_token_id (int or list) from `dir` when that file exists there.
void apply_model_config(Tokenizer& tok, const std::string& dir);

}  // namespace lowbit

// tiktoken rank file (LLaMA-3's original tokenizer.model): one "base64(token bytes) rank" per line. In
// tiktoken a merge of two adjacent parts is allowed iff their concatenation has a rank, and the lowest such
// rank merges first; we turn that into explicit merges (a, b) -> a+b with priority rank(a+b) for the shared
// BPE encoder.
//
// Special tokens: tiktoken only recognises special-token strings in text when the caller passes them as
// `allowed_special`; Meta's llama3 Tokenizer.encode defaults to allowed_special=set(), so "<|begin_of_text|>"
// written in the text is tokenized as ordinary text here (unlike HF's tokenizer.json, which parses it).
// Meta's wrapper also cuts texts into 400k-character chunks and runs of whitespace / non-whitespace longer
// than 25,000 characters into pieces before calling tiktoken; we do not, so only such extreme runs could
// differ.
#include <filesystem>

#include "core/error.h"
#include "core/mmap.h"
#include "io/bpe_tokenizer.h"

namespace lowbit {

namespace {

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Strict RFC 4648 base64 with padding; false on any other input.
bool base64_decode(std::string_view s, std::string& out) {
  out.clear();
  if (s.empty() || s.size() % 4 != 0) return false;
  for (size_t i = 0; i < s.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s[i + k];
      if (c == '=' && i + 4 == s.size() && k >= 2) {
        v[k] = 0;
        ++pad;
      } else {
        if (pad) return false;  // data after padding
        v[k] = base64_value(c);
        if (v[k] < 0) return false;
      }
    }
    uint32_t x = uint32_t(v[0]) << 18 | uint32_t(v[1]) << 12 | uint32_t(v[2]) << 6 | uint32_t(v[3]);
    out.push_back(char(x >> 16));
    if (pad < 2) out.push_back(char(x >> 8 & 0xFF));
    if (pad < 1) out.push_back(char(x & 0xFF));
  }
  return true;
}

// Meta's llama3 tokenizer.py special tokens, numbered from the first id after the ranks (128000 for LLaMA-3).
std::vector<std::string> llama3_special_tokens() {
  std::vector<std::string> s = {"<|begin_of_text|>",
                                "<|end_of_text|>",
                                "<|reserved_special_token_0|>",
                                "<|reserved_special_token_1|>",
                                "<|reserved_special_token_2|>",
                                "<|reserved_special_token_3|>",
                                "<|start_header_id|>",
                                "<|end_header_id|>",
                                "<|reserved_special_token_4|>",
                                "<|eot_id|>"};
  for (int i = 5; i < 256 - 5; ++i) s.push_back(fmt::format("<|reserved_special_token_{}|>", i));
  return s;  // 256 in all
}

}  // namespace

std::unique_ptr<Tokenizer> load_tiktoken_tokenizer(const std::string& path) {
  std::string text = read_file(path);
  BpeSpec spec;
  spec.name = path;
  size_t pos = 0, line_no = 0, count = 0;
  std::string bytes;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos) fail("{}:{}: expected \"base64-token rank\"", path, line_no);
    if (!base64_decode(line.substr(0, sp), bytes)) fail("{}:{}: token is not valid base64", path, line_no);
    std::string_view num = line.substr(sp + 1);
    if (num.empty() || num.size() > 8) fail("{}:{}: rank is not a number below 10^8", path, line_no);
    uint32_t rank = 0;
    for (char c : num) {
      if (c < '0' || c > '9') fail("{}:{}: rank is not a number", path, line_no);
      rank = rank * 10 + uint32_t(c - '0');
    }
    if (rank >= (1u << 24)) fail("{}:{}: rank {} is too large", path, line_no, rank);
    if (rank >= spec.tokens.size()) spec.tokens.resize(size_t(rank) + 1);
    if (!spec.tokens[rank].empty()) fail("{}:{}: rank {} appears twice", path, line_no, rank);
    spec.tokens[rank] = bytes;
    ++count;
  }
  if (count == 0) fail("{}: no tokens (not a tiktoken rank file)", path);
  // Special tokens are numbered after len(ranks): ranks must be exactly 0..count-1.
  if (spec.tokens.size() != count) fail("{}: ranks are not 0..{} without gaps", path, count - 1);
  bool has_byte[256] = {};
  for (const auto& t : spec.tokens)
    if (t.size() == 1) has_byte[uint8_t(t[0])] = true;
  for (int b = 0; b < 256; ++b)
    if (!has_byte[b]) fail("{}: byte 0x{:02x} has no rank (tiktoken needs all 256 single bytes)", path, b);
  {
    std::unordered_map<std::string_view, int32_t> ids;
    ids.reserve(count);
    for (size_t id = 0; id < count; ++id) ids.emplace(spec.tokens[id], int32_t(id));
    for (size_t id = 0; id < count; ++id) {
      std::string_view t = spec.tokens[id];
      for (size_t k = 1; k < t.size(); ++k) {
        auto a = ids.find(t.substr(0, k)), b = ids.find(t.substr(k));
        if (a != ids.end() && b != ids.end())
          spec.merges.push_back({a->second, b->second, int32_t(id), uint32_t(id)});
      }
    }
  }
  auto specials = llama3_special_tokens();
  for (size_t i = 0; i < specials.size(); ++i) spec.added.push_back({specials[i], int32_t(count + i), true});
  spec.pattern = kLlama3Pattern;
  spec.ignore_merges = true;  // tiktoken emits a piece that is itself a rank without merging
  spec.parse_added_in_text = false;

  auto tok = std::make_unique<BpeTokenizer>(std::move(spec));
  // Meta's llama3 Tokenizer: bos <|begin_of_text|>, stop tokens <|end_of_text|> and <|eot_id|>.
  tok->bos_id = int32_t(count);
  tok->eos_ids = {int32_t(count + 1), int32_t(count + 9)};
  std::string dir = std::filesystem::path(path).parent_path().string();
  apply_tokenizer_config(*tok, dir.empty() ? "." : dir);
  return tok;
}

}  // namespace lowbit

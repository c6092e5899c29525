// Which tokenizer belongs to a model path, and the BOS/EOS settings from the HF config files beside it.
#include <fmt/ranges.h>

#include <cctype>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/json.h"
#include "core/paths.h"
#include "io/tokenizer.h"

namespace fs = std::filesystem;

namespace lowbit {

namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// tokenizer_config.json writes special tokens as a string or as an AddedToken object {"content": ...}.
const std::string* token_text(const Json& v) {
  if (v.is_string()) return &v.get_ref<const std::string&>();
  if (v.is_object()) {
    auto it = v.find("content");
    if (it != v.end() && it->is_string()) return &it->get_ref<const std::string&>();
  }
  return nullptr;
}

// A tiktoken rank file starts with "base64 rank" on its first line; a SentencePiece model is a protobuf.
bool looks_like_tiktoken(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("{}: cannot open", path);
  char buf[256];
  f.read(buf, sizeof buf);
  std::string_view head(buf, size_t(f.gcount()));
  size_t nl = head.find('\n');
  if (nl == std::string_view::npos) return false;
  std::string_view line = head.substr(0, nl);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t sp = line.find(' ');
  if (sp == 0 || sp == std::string_view::npos || sp + 1 == line.size()) return false;
  for (size_t i = 0; i < sp; ++i) {
    char c = line[i];
    if (!(std::isalnum(uint8_t(c)) || c == '+' || c == '/' || c == '=')) return false;
  }
  for (size_t i = sp + 1; i < line.size(); ++i)
    if (!std::isdigit(uint8_t(line[i]))) return false;
  return true;
}

std::unique_ptr<Tokenizer> load_model_file(const std::string& path) {
  return looks_like_tiktoken(path) ? load_tiktoken_tokenizer(path) : load_sentencepiece_tokenizer(path);
}

// llama2.c checkpoint header: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative when the
// classifier is not shared), seq_len, all int32.
std::unique_ptr<Tokenizer> load_llama2c_beside(const std::string& bin) {
  std::ifstream f(bin, std::ios::binary);
  if (!f) fail("{}: cannot open", bin);
  int32_t hdr[7];
  f.read(reinterpret_cast<char*>(hdr), sizeof hdr);
  if (f.gcount() != sizeof hdr) fail("{}: too short for a llama2.c header (28 bytes)", bin);
  int64_t vocab = hdr[5] < 0 ? -int64_t(hdr[5]) : hdr[5];
  fs::path parent = fs::path(bin).parent_path();
  std::string dir = parent.empty() ? std::string(".") : parent.string();
  std::vector<std::string> tried;
  if (vocab > 0 && vocab <= (int64_t(1) << 24)) tried.push_back(fmt::format("{}/tok{}.bin", dir, vocab));
  tried.push_back(dir + "/tokenizer.bin");
  for (const auto& t : tried)
    if (path_exists(t)) return load_llama2c_tokenizer(t);
  fail("{}: no llama2.c tokenizer beside it (looked for {})", bin, fmt::join(tried, ", "));
}

}  // namespace

void apply_tokenizer_config(Tokenizer& tok, const std::string& dir) {
  std::string path = dir + "/tokenizer_config.json";
  if (!path_exists(path)) return;
  Json j = parse_json_file(path);
  if (!j.is_object()) fail("{}: not a JSON object", path);
  if (auto it = j.find("add_bos_token"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) fail("{}: add_bos_token is not a boolean", path);
    tok.add_bos = it->get<bool>();
  }
  auto lookup = [&](const char* key) -> int32_t {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return -2;  // not given
    const std::string* s = token_text(*it);
    if (!s) fail("{}: {} is neither a string nor {{\"content\": ...}}", path, key);
    int32_t id = tok.token_to_id(*s);
    if (id < 0) fail("{}: {} \"{}\" is not a token of the tokenizer", path, key, s->substr(0, 60));
    return id;
  };
  if (int32_t id = lookup("bos_token"); id != -2) tok.bos_id = id;
  if (int32_t id = lookup("eos_token"); id != -2) tok.eos_ids = {id};
}

void apply_model_config(Tokenizer& tok, const std::string& dir) {
  std::string path = dir + "/config.json";
  if (!path_exists(path)) return;
  Json j = parse_json_file(path);
  if (!j.is_object()) fail("{}: not a JSON object", path);
  auto ids = [&](const char* key) {
    std::vector<int32_t> out;
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return out;
    auto one = [&](const Json& v) {
      if (!v.is_number_integer()) fail("{}: {} is not an integer or a list of integers", path, key);
      int64_t x = v.get<int64_t>();
      if (x < 0 || x >= tok.vocab_size())
        fail("{}: {} {} is outside the vocabulary (size {})", path, key, x, tok.vocab_size());
      out.push_back(int32_t(x));
    };
    if (it->is_array()) {
      for (const auto& v : *it) one(v);
    } else {
      one(*it);
    }
    return out;
  };
  // The tokenizer's own bos wins (it is what encode uses); the model's eos ids are all stop tokens.
  auto bos = ids("bos_token_id");
  if (tok.bos_id < 0 && !bos.empty()) tok.bos_id = bos[0];
  for (int32_t e : ids("eos_token_id"))
    if (!tok.is_eos(e)) tok.eos_ids.push_back(e);
}

std::unique_ptr<Tokenizer> load_tokenizer_for_model(const std::string& model_path) {
  if (is_directory(model_path)) {
    std::unique_ptr<Tokenizer> tok;
    if (path_exists(model_path + "/tokenizer.json")) {
      tok = load_bpe_json_tokenizer(model_path + "/tokenizer.json");
    } else if (path_exists(model_path + "/tokenizer.model")) {
      tok = load_model_file(model_path + "/tokenizer.model");
    } else {
      fail("{}: no tokenizer.json or tokenizer.model in the model directory", model_path);
    }
    apply_model_config(*tok, model_path);
    return tok;
  }
  if (!path_exists(model_path)) fail("{}: no such file or directory", model_path);
  if (ends_with(model_path, ".gguf")) return load_gguf_tokenizer(model_path);
  if (ends_with(model_path, ".json")) return load_bpe_json_tokenizer(model_path);
  if (ends_with(model_path, ".model")) return load_model_file(model_path);
  if (ends_with(model_path, ".bin")) {
    std::string file = fs::path(model_path).filename().string();
    if (file == "tokenizer.bin" || file.rfind("tok", 0) == 0) return load_llama2c_tokenizer(model_path);
    return load_llama2c_beside(model_path);
  }
  fail("{}: cannot tell its tokenizer (expected a model directory, a .gguf, a llama2.c .bin, tokenizer.json or "
       "tokenizer.model)",
       model_path);
}

}  // namespace lowbit

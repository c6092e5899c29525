// HF tokenizers `tokenizer.json` (model.type "BPE", byte-level) -> BpeTokenizer. Only the subset LLaMA-3 and
// GPT-2 style files use is accepted; anything else is an "unsupported" error rather than a silent mismatch.
#include <filesystem>
#include <unordered_map>

#include "core/error.h"
#include "core/json.h"
#include "core/mmap.h"
#include "io/bpe_tokenizer.h"

namespace lowbit {

namespace {

// GPT-2's pattern, used when a ByteLevel pre-tokenizer has use_regex true (HF ByteLevel's built-in regex).
constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string short_text(std::string_view s) {
  std::string o;
  for (char ch : s.substr(0, 40)) o.push_back(uint8_t(ch) < 0x20 ? '?' : ch);
  return s.size() > 40 ? o + "..." : o;
}

// Byte-level alphabet string (UTF-8) -> raw bytes; false when a code point is outside the alphabet.
bool byte_level_decode(std::string_view s, std::string& out) {
  out.clear();
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    char32_t c;
    if (p[i] < 0x80) {
      c = p[i++];
    } else if ((p[i] & 0xE0) == 0xC0 && i + 1 < n && (p[i + 1] & 0xC0) == 0x80) {
      c = char32_t(p[i] & 0x1F) << 6 | (p[i + 1] & 0x3F);
      i += 2;
    } else {
      return false;  // the alphabet ends at U+0143: two UTF-8 bytes at most
    }
    int b = unicode_to_byte(c);
    if (b < 0) return false;
    out.push_back(char(b));
  }
  return true;
}

struct Parser {
  const std::string& name;

  [[noreturn]] void bad(const std::string& what) const { fail("{}: {}", name, what); }

  const Json& member(const Json& obj, const char* key, const char* where) const {
    auto it = obj.find(key);
    if (it == obj.end()) bad(fmt::format("{} has no \"{}\"", where, key));
    return *it;
  }
  bool get_bool(const Json& obj, const char* key, bool dflt, const char* where) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return dflt;
    if (!it->is_boolean()) bad(fmt::format("{}.{} is not a boolean", where, key));
    return it->get<bool>();
  }
  int32_t get_id(const Json& v, const std::string& what) const {
    if (!v.is_number_integer()) bad(what + " is not an integer id");
    auto x = v.get<int64_t>();
    if (x < 0 || x >= (int64_t(1) << 24)) bad(fmt::format("{} = {} is out of range", what, x));
    return int32_t(x);
  }

  // Fills spec.pattern from the pre_tokenizer; requires a ByteLevel step (the vocabulary is byte-level).
  void pre_tokenizer(const Json& pt, BpeSpec& spec) const {
    if (!pt.is_object()) bad("pre_tokenizer is missing or not an object");
    std::vector<const Json*> steps;
    std::string type = pt.value("type", "");
    if (type == "Sequence") {
      const Json& list = member(pt, "pretokenizers", "pre_tokenizer");
      if (!list.is_array()) bad("pre_tokenizer.pretokenizers is not an array");
      for (const auto& s : list) steps.push_back(&s);
    } else {
      steps.push_back(&pt);
    }
    bool byte_level = false;
    for (const Json* s : steps) {
      if (!s->is_object() || !s->contains("type") || !(*s)["type"].is_string())
        bad("pre_tokenizer step without a \"type\"");
      std::string t = (*s)["type"].get<std::string>();
      if (t == "Split") {
        const Json& pat = member(*s, "pattern", "Split pre_tokenizer");
        if (!pat.is_object() || !pat.contains("Regex") || !pat["Regex"].is_string())
          bad("Split pre_tokenizer: only {\"Regex\": ...} patterns are supported");
        if (s->value("behavior", "") != "Isolated" || get_bool(*s, "invert", false, "Split"))
          bad("Split pre_tokenizer: only behavior Isolated without invert is supported");
        if (!spec.pattern.empty()) bad("more than one pre-tokenizer regex is not supported");
        spec.pattern = pat["Regex"].get<std::string>();
      } else if (t == "ByteLevel") {
        if (get_bool(*s, "add_prefix_space", false, "ByteLevel")) bad("ByteLevel add_prefix_space is not supported");
        if (get_bool(*s, "use_regex", true, "ByteLevel")) {
          if (!spec.pattern.empty()) bad("Split followed by ByteLevel use_regex is not supported");
          spec.pattern = kGpt2Pattern;
        }
        byte_level = true;
      } else {
        bad(fmt::format("pre_tokenizer type \"{}\" is not supported", short_text(t)));
      }
    }
    if (!byte_level) bad("pre_tokenizer has no ByteLevel step (only byte-level BPE is supported)");
  }

  BpeSpec parse(const Json& j) const {
    if (!j.is_object()) bad("tokenizer.json is not a JSON object");
    if (j.contains("normalizer") && !j["normalizer"].is_null()) bad("a normalizer is not supported");
    const Json& model = member(j, "model", "tokenizer.json");
    if (!model.is_object()) bad("\"model\" is not an object");
    if (model.contains("type") && model["type"] != "BPE") bad("model.type is not \"BPE\"");
    if (get_bool(model, "byte_fallback", false, "model")) bad("model.byte_fallback is not supported");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (model.contains(k) && !model[k].is_null() && model[k] != "") bad(fmt::format("model.{} is not supported", k));
    if (model.contains("dropout") && !model["dropout"].is_null()) bad("model.dropout is not supported");

    BpeSpec spec;
    spec.name = name;
    spec.ignore_merges = get_bool(model, "ignore_merges", false, "model");
    const Json& vocab = member(model, "vocab", "model");
    if (!vocab.is_object()) bad("model.vocab is not an object");
    std::unordered_map<std::string, int32_t> enc_ids;  // byte-level string -> id
    enc_ids.reserve(vocab.size());
    std::string raw;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      int32_t id = get_id(it.value(), fmt::format("model.vocab[\"{}\"]", short_text(it.key())));
      if (it.key().empty()) bad("model.vocab has an empty token");
      if (!byte_level_decode(it.key(), raw))
        bad(fmt::format("model.vocab token \"{}\" is not byte-level encoded", short_text(it.key())));
      if (size_t(id) >= spec.tokens.size()) spec.tokens.resize(size_t(id) + 1);
      if (!spec.tokens[id].empty()) bad(fmt::format("model.vocab id {} is used twice", id));
      spec.tokens[id] = raw;
      enc_ids.emplace(it.key(), id);
    }
    if (model.contains("unk_token") && !model["unk_token"].is_null()) {
      const Json& u = model["unk_token"];
      if (!u.is_string() || !enc_ids.count(u.get<std::string>())) bad("model.unk_token is not a vocabulary token");
      spec.unk_id = enc_ids[u.get<std::string>()];
    }

    const Json& merges = member(model, "merges", "model");
    if (!merges.is_array()) bad("model.merges is not an array");
    spec.merges.reserve(merges.size());
    auto lookup = [&](const std::string& tok, size_t i) {
      auto it = enc_ids.find(tok);
      if (it == enc_ids.end()) bad(fmt::format("merge {} refers to unknown token \"{}\"", i, short_text(tok)));
      return it->second;
    };
    for (size_t i = 0; i < merges.size(); ++i) {
      const Json& m = merges[i];
      std::string a, b;
      if (m.is_string()) {  // "a b": byte-level tokens never contain a plain space
        const std::string& s = m.get_ref<const std::string&>();
        size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          bad(fmt::format("merge {} \"{}\" is not two tokens separated by one space", i, short_text(s)));
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        bad(fmt::format("merge {} is neither \"a b\" nor [a, b]", i));
      }
      spec.merges.push_back({lookup(a, i), lookup(b, i), lookup(a + b, i), uint32_t(i)});
    }

    if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
      const Json& added = j["added_tokens"];
      if (!added.is_array()) bad("added_tokens is not an array");
      for (size_t i = 0; i < added.size(); ++i) {
        const Json& a = added[i];
        std::string where = fmt::format("added_tokens[{}]", i);
        if (!a.is_object()) bad(where + " is not an object");
        const Json& content = member(a, "content", where.c_str());
        if (!content.is_string() || content.get_ref<const std::string&>().empty())
          bad(where + ".content is not a non-empty string");
        for (const char* k : {"lstrip", "rstrip", "single_word"})
          if (get_bool(a, k, false, where.c_str())) bad(fmt::format("{}.{} is not supported", where, k));
        spec.added.push_back({content.get<std::string>(), get_id(member(a, "id", where.c_str()), where + ".id"),
                              get_bool(a, "special", false, where.c_str())});
      }
    }
    pre_tokenizer(member(j, "pre_tokenizer", "tokenizer.json"), spec);
    return spec;
  }
};

std::unique_ptr<Tokenizer> make_bpe(BpeSpec spec) {
  auto tok = std::make_unique<BpeTokenizer>(std::move(spec));
  tok->bos_id = tok->token_to_id("<|begin_of_text|>");
  for (const char* e : {"<|end_of_text|>", "<|eot_id|>"})
    if (int32_t id = tok->token_to_id(e); id >= 0) tok->eos_ids.push_back(id);
  return tok;
}

}  // namespace

std::unique_ptr<Tokenizer> load_bpe_json_tokenizer_from_text(std::string_view text, const std::string& name) {
  Json j = parse_json_text(text, name);
  try {
    return make_bpe(Parser{name}.parse(j));
  } catch (const Json::exception& e) {  // a type mismatch the checks above did not anticipate
    std::string msg = e.what();
    if (auto p = msg.find("] "); p != std::string::npos) msg = msg.substr(p + 2);
    fail("{}: malformed tokenizer.json: {}", name, msg);
  }
}

std::unique_ptr<Tokenizer> load_bpe_json_tokenizer(const std::string& path) {
  auto tok = load_bpe_json_tokenizer_from_text(read_file(path), path);
  std::string dir = std::filesystem::path(path).parent_path().string();
  apply_tokenizer_config(*tok, dir.empty() ? "." : dir);
  return tok;
}

}  // namespace lowbit

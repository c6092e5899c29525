// Byte-level BPE encoder/decoder shared by the tokenizer.json and tiktoken loaders.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "io/bpe_tokenizer.h"

#include <pcre2.h>

#include <algorithm>

#include "core/error.h"

namespace lowbit {

// Meta's llama3 tokenizer.py pattern: contractions (case-insensitive), a letter run with at most one leading
// non-letter/non-digit, digit groups of 1-3, punctuation runs with an optional leading space, newline runs, and
// whitespace that leaves the last space to the following word.
const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

char32_t byte_to_unicode(uint8_t b) {
  // Bytes 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF are printable and stand for themselves; the rest, in byte order,
  // become U+0100, U+0101, ... (Radford et al. 2019, GPT-2 encoder.py bytes_to_unicode).
  auto printable = [](int c) { return (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE); };
  if (printable(b)) return b;
  int n = 0;
  for (int c = 0; c < b; ++c)
    if (!printable(c)) ++n;
  return char32_t(0x100 + n);
}

int unicode_to_byte(char32_t c) {
  static const auto table = [] {
    std::vector<int16_t> t(0x100 + 68, -1);
    for (int b = 0; b < 256; ++b) t[byte_to_unicode(uint8_t(b))] = int16_t(b);
    return t;
  }();
  return c < table.size() ? table[c] : -1;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* b = reinterpret_cast<const uint8_t*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    uint8_t c = b[i];
    if (c < 0x80) {
      out.push_back(char(c));
      ++i;
      continue;
    }
    // Expected length and allowed range of the second byte (Unicode Table 3-7, well-formed UTF-8).
    int len = 0;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c == 0xED) len = 3, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;
    int k = 1;
    if (len > 0) {
      for (; k < len && i + k < n; ++k) {
        uint8_t x = b[i + k];
        if (k == 1 ? (x < lo || x > hi) : (x < 0x80 || x > 0xBF)) break;
      }
    }
    if (len > 0 && k == len) {
      out.append(s.substr(i, len));
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD replaces the maximal invalid subpart b[i, i+k)
    }
    i += k;
  }
  return out;
}

struct BpeTokenizer::Regex {
  pcre2_code* code = nullptr;
  ~Regex() {
    if (code) pcre2_code_free(code);
  }
};

namespace {

constexpr size_t kMaxTokens = size_t(1) << 24;

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

// Printable, one-line excerpt of a token for error messages.
std::string show(std::string_view s) {
  std::string o;
  for (char ch : s.substr(0, 40)) {
    auto c = uint8_t(ch);
    if (c < 0x20 || c == 0x7F) o += fmt::format("\\x{:02x}", c);
    else o.push_back(ch);
  }
  if (s.size() > 40) o += "...";
  return o;
}

size_t utf8_len_at(const uint8_t* p, size_t n) {
  uint8_t c = p[0];
  size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  return std::min(len, n);
}

// Scratch state of one encode() call: PCRE2 match data, the pre-token cache and the BPE work arrays.
struct EncodeState {
  pcre2_match_data* md = nullptr;
  pcre2_match_context* mc = nullptr;
  pcre2_jit_stack* js = nullptr;
  // Pre-token bytes (views into the caller's text) -> [offset, count) in cache_ids. Words repeat a lot in
  // natural text, so most pre-tokens skip BPE.
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> cache;
  std::vector<int32_t> cache_ids;
  ~EncodeState() {
    if (md) pcre2_match_data_free(md);
    if (mc) pcre2_match_context_free(mc);
    if (js) pcre2_jit_stack_free(js);
  }
};

struct Cand {
  uint32_t priority, pos;
  int32_t left, right;
  bool operator>(const Cand& o) const { return priority != o.priority ? priority > o.priority : pos > o.pos; }
};

}  // namespace

BpeTokenizer::BpeTokenizer(BpeSpec spec)
    : name_(std::move(spec.name)),
      tokens_(std::move(spec.tokens)),
      ignore_merges_(spec.ignore_merges),
      unk_id_(spec.unk_id),
      added_(std::move(spec.added)),
      parse_added_(spec.parse_added_in_text) {
  if (tokens_.size() > kMaxTokens) fail("{}: {} tokens is more than the supported {}", name_, tokens_.size(), kMaxTokens);
  ids_.reserve(tokens_.size());
  for (size_t id = 0; id < tokens_.size(); ++id) {
    if (tokens_[id].empty()) continue;
    auto [it, fresh] = ids_.emplace(tokens_[id], int32_t(id));
    if (!fresh) fail("{}: tokens {} and {} are the same bytes '{}'", name_, it->second, id, show(tokens_[id]));
  }
  for (int b = 0; b < 256; ++b) {
    auto it = ids_.find(std::string_view(reinterpret_cast<const char*>(&b), 1));
    byte_ids_[b] = it == ids_.end() ? -1 : it->second;
  }
  auto valid = [&](int32_t id) { return id >= 0 && size_t(id) < tokens_.size() && !tokens_[id].empty(); };
  if (unk_id_ >= 0 && !valid(unk_id_)) fail("{}: unk token id {} is not in the vocabulary", name_, unk_id_);
  merges_.reserve(spec.merges.size());
  for (size_t i = 0; i < spec.merges.size(); ++i) {
    const auto& m = spec.merges[i];
    if (!valid(m.left) || !valid(m.right) || !valid(m.result))
      fail("{}: merge {} refers to a token id outside the vocabulary", name_, i);
    const std::string &l = tokens_[m.left], &r = tokens_[m.right], &res = tokens_[m.result];
    if (res.size() != l.size() + r.size() || res.compare(0, l.size(), l) != 0 || res.compare(l.size(), r.size(), r) != 0)
      fail("{}: merge {} ('{}' + '{}') does not give token {} ('{}')", name_, i, show(l), show(r), m.result, show(res));
    merges_.emplace(pair_key(m.left, m.right), MergeInfo{m.priority, m.result});  // first (lowest) rank wins
  }
  for (const auto& a : added_) {
    if (a.id < 0 || size_t(a.id) >= kMaxTokens) fail("{}: added token id {} out of range", name_, a.id);
    if (a.content.empty()) fail("{}: added token {} has empty content", name_, a.id);
    if (size_t(a.id) >= tokens_.size()) tokens_.resize(size_t(a.id) + 1);
    tokens_[a.id] = a.content;  // decode renders the added token's text
  }
  // Longest first, so the first candidate that matches at a position is the leftmost-longest match.
  std::stable_sort(added_.begin(), added_.end(),
                   [](const auto& x, const auto& y) { return x.content.size() > y.content.size(); });
  if (!spec.pattern.empty()) {
    int err = 0;
    PCRE2_SIZE off = 0;
    regex_ = std::make_unique<Regex>();
    regex_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(spec.pattern.data()), spec.pattern.size(),
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
    if (!regex_->code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail("{}: bad pre-tokenizer regex at offset {}: {}", name_, size_t(off), reinterpret_cast<char*>(msg));
    }
    pcre2_jit_compile(regex_->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is absent
  }
}

BpeTokenizer::~BpeTokenizer() = default;

int32_t BpeTokenizer::token_to_id(std::string_view text) const {
  for (const auto& a : added_)
    if (a.content == text) return a.id;
  auto it = ids_.find(text);
  return it == ids_.end() ? -1 : it->second;
}

void BpeTokenizer::bpe_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_ || piece.size() == 1) {
    auto it = ids_.find(piece);
    if (it != ids_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // One symbol per byte in a doubly linked list; candidate merges in a min-heap by (priority, position).
  // Stale candidates are recognised on pop: the left symbol is gone or the pair's ids changed. O(n log n).
  std::vector<int32_t> sym, nxt, prv;
  sym.reserve(piece.size());
  for (char ch : piece) {
    int32_t id = byte_ids_[uint8_t(ch)];
    if (id < 0) id = unk_id_;
    if (id >= 0) sym.push_back(id);  // HF BPE without unk_token drops bytes it has no token for
  }
  size_t n = sym.size();
  if (n <= 1) {
    out.insert(out.end(), sym.begin(), sym.end());
    return;
  }
  nxt.resize(n);
  prv.resize(n);
  for (size_t i = 0; i < n; ++i) {
    nxt[i] = i + 1 < n ? int32_t(i + 1) : -1;
    prv[i] = int32_t(i) - 1;
  }
  std::vector<Cand> heap;
  auto consider = [&](int32_t i) {
    if (i < 0 || nxt[i] < 0) return;
    auto it = merges_.find(pair_key(sym[i], sym[nxt[i]]));
    if (it == merges_.end()) return;
    heap.push_back({it->second.priority, uint32_t(i), sym[i], sym[nxt[i]]});
    std::push_heap(heap.begin(), heap.end(), std::greater<>());
  };
  for (size_t i = 0; i + 1 < n; ++i) consider(int32_t(i));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    Cand c = heap.back();
    heap.pop_back();
    int32_t i = int32_t(c.pos), j = nxt[i];
    if (sym[i] != c.left || j < 0 || sym[j] != c.right) continue;
    sym[i] = merges_.at(pair_key(c.left, c.right)).result;
    sym[j] = -1;
    nxt[i] = nxt[j];
    if (nxt[j] >= 0) prv[nxt[j]] = i;
    consider(prv[i]);
    consider(i);
  }
  for (int32_t i = 0; i >= 0; i = nxt[i]) out.push_back(sym[i]);
}

void BpeTokenizer::encode_segment(std::string_view seg, std::vector<int32_t>& out, void* state_ptr) const {
  auto& st = *static_cast<EncodeState*>(state_ptr);
  auto piece = [&](std::string_view p) {
    auto it = st.cache.find(p);
    if (it == st.cache.end()) {
      size_t off = st.cache_ids.size();
      bpe_piece(p, st.cache_ids);
      it = st.cache.emplace(p, std::make_pair(uint32_t(off), uint32_t(st.cache_ids.size() - off))).first;
    }
    const int32_t* ids = st.cache_ids.data() + it->second.first;
    out.insert(out.end(), ids, ids + it->second.second);
  };
  if (!regex_) {
    piece(seg);
    return;
  }
  // A pattern from a file may backtrack catastrophically: bound the work per match, generously for long runs
  // (the LLaMA-3 pattern backtracks once over a whitespace run).
  pcre2_set_match_limit(st.mc, uint32_t(std::min<size_t>(10'000'000 + 64 * seg.size(), 4'000'000'000u)));
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(seg.data());
  size_t n = seg.size(), pos = 0, gap = 0;  // text in [gap, match start) matched nothing: it is a pre-token too
  while (pos < n) {
    int rc = pcre2_match(regex_->code, subject, n, pos, 0, st.md, st.mc);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      fail("{}: pre-tokenizer regex failed: {}", name_, reinterpret_cast<char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.md);
    size_t s = ov[0], e = ov[1];
    if (s < gap || s > n) s = gap;  // \K can report odd starts; never step backwards
    if (e <= s || e > n) {          // empty match: move on by one character
      if (ov[0] >= n) break;
      pos = std::max(pos, size_t(ov[0])) + utf8_len_at(subject + ov[0], n - ov[0]);
      continue;
    }
    if (s > gap) piece(seg.substr(gap, s - gap));
    piece(seg.substr(s, e - s));
    pos = gap = e;
  }
  if (gap < n) piece(seg.substr(gap));
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3);
  EncodeState st;
  if (regex_) {
    st.md = pcre2_match_data_create_from_pattern(regex_->code, nullptr);
    st.mc = pcre2_match_context_create(nullptr);
    st.js = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    if (!st.md || !st.mc || !st.js) fail("{}: out of memory for the pre-tokenizer", name_);
    pcre2_jit_stack_assign(st.mc, nullptr, st.js);
    pcre2_set_depth_limit(st.mc, 1'000'000);
  }
  if (!parse_added_ || added_.empty()) {
    encode_segment(text, out, &st);
    return out;
  }
  // Added tokens are split out first (leftmost-longest, as HF's AddedVocabulary); the rest is pre-tokenized.
  bool first_byte[256] = {};
  for (const auto& a : added_) first_byte[uint8_t(a.content[0])] = true;
  size_t seg = 0, i = 0;
  while (i < text.size()) {
    const BpeSpec::Added* hit = nullptr;
    if (first_byte[uint8_t(text[i])]) {
      for (const auto& a : added_)
        if (text.compare(i, a.content.size(), a.content) == 0) {
          hit = &a;
          break;
        }
    }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > seg) encode_segment(text.substr(seg, i - seg), out, &st);
    out.push_back(hit->id);
    i += hit->content.size();
    seg = i;
  }
  if (seg < text.size()) encode_segment(text.substr(seg), out, &st);
  return out;
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= tokens_.size())
      fail("{}: token id {} out of range (vocabulary size {})", name_, id, tokens_.size());
    if (id == bos_id || is_eos(id)) continue;
    bytes += tokens_[id];
  }
  return utf8_lossy(bytes);
}

}  // namespace lowbit

#include "io/score_bpe.h"

#include <queue>

#include "core/error.h"

namespace lowbit {

namespace {

// "<0x41>" -> 0x41; -1 for anything else.
int parse_byte_piece(const std::string& s) {
  if (s.size() != 6 || s.compare(0, 3, "<0x") != 0 || s[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    char c = s[size_t(i)];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

}  // namespace

ScoreBpeTokenizer::ScoreBpeTokenizer(ScoreVocab vocab, bool add_dummy_prefix, std::string source)
    : vocab_(std::move(vocab)), add_dummy_prefix_(add_dummy_prefix), source_(std::move(source)) {
  const size_t n = vocab_.pieces.size();
  if (vocab_.scores.size() != n || vocab_.kinds.size() != n)
    fail("{}: vocabulary has {} pieces, {} scores and {} types", source_, n, vocab_.scores.size(), vocab_.kinds.size());
  std::fill(std::begin(byte_id_), std::end(byte_id_), -1);
  byte_value_.assign(n, -1);
  for (size_t i = 0; i < n; ++i) {
    const std::string& p = vocab_.pieces[i];
    int32_t id = int32_t(i);
    all_.emplace(p, id);
    switch (vocab_.kinds[i]) {
      case PieceKind::Normal:
      case PieceKind::UserDefined:
        if (!p.empty()) mergeable_.emplace(p, id);
        break;
      case PieceKind::Byte: {
        int b = parse_byte_piece(p);
        if (b < 0) fail("{}: byte token {} is '{}', not <0xXX>", source_, i, p);
        byte_value_[i] = int16_t(b);
        if (byte_id_[b] < 0) byte_id_[b] = id;
        break;
      }
      case PieceKind::Unknown:
        if (unk_id_ < 0) unk_id_ = id;
        break;
      default:
        break;
    }
  }
}

int32_t ScoreBpeTokenizer::token_to_id(std::string_view text) const {
  auto it = all_.find(std::string(text));
  return it == all_.end() ? -1 : it->second;
}

std::vector<int32_t> ScoreBpeTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  if (text.empty()) return out;
  std::string work;
  work.reserve(text.size() + 1);
  if (add_dummy_prefix_) work += ' ';
  work += text;

  // Symbols: contiguous spans of `work` in a doubly linked list; len 0 marks one merged away.
  struct Sym {
    uint32_t start, len;
    int32_t prev, next, id;
    bool mergeable;  // byte-fallback symbols never merge (run.c: "<0xE2>" + "x" is never a piece)
  };
  std::vector<Sym> syms;
  syms.reserve(work.size());
  auto push = [&](uint32_t start, uint32_t len, int32_t id, bool mergeable) {
    int32_t i = int32_t(syms.size());
    syms.push_back({start, len, i - 1, -1, id, mergeable});
    if (i > 0) syms[size_t(i) - 1].next = i;
  };
  for (size_t i = 0; i < work.size();) {
    // One UTF-8 character: a byte plus following continuation bytes, at most 4 in all (run.c's grouping, which
    // also keeps malformed sequences together byte by byte).
    size_t j = i + 1;
    while (j < work.size() && j - i < 4 && (uint8_t(work[j]) & 0xC0) == 0x80) ++j;
    auto it = mergeable_.find(work.substr(i, j - i));
    if (it != mergeable_.end()) {
      push(uint32_t(i), uint32_t(j - i), it->second, true);
    } else {
      for (size_t k = i; k < j; ++k) {
        int32_t id = byte_id_[uint8_t(work[k])];
        if (id < 0) id = unk_id_;
        if (id < 0) fail("{}: cannot encode byte 0x{:02X}: no <0x{:02X}> or <unk> piece", source_, uint8_t(work[k]), uint8_t(work[k]));
        push(uint32_t(k), 1, id, false);
      }
    }
    i = j;
  }

  struct Cand {
    float score;
    int32_t left, right;
    uint32_t len;
    int32_t id;
  };
  // Highest score first; among equal scores the leftmost pair (run.c keeps the first strict maximum).
  auto worse = [](const Cand& a, const Cand& b) { return a.score != b.score ? a.score < b.score : a.left > b.left; };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  std::string scratch;
  auto consider = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0 || !syms[size_t(l)].mergeable || !syms[size_t(r)].mergeable) return;
    uint32_t len = syms[size_t(l)].len + syms[size_t(r)].len;
    scratch.assign(work, syms[size_t(l)].start, len);
    auto it = mergeable_.find(scratch);
    if (it != mergeable_.end()) heap.push({vocab_.scores[size_t(it->second)], l, r, len, it->second});
  };
  for (size_t i = 0; i + 1 < syms.size(); ++i) consider(int32_t(i), int32_t(i + 1));
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& l = syms[size_t(c.left)];
    Sym& r = syms[size_t(c.right)];
    // Stale when either side was merged away or grew since the candidate was queued.
    if (l.len == 0 || r.len == 0 || l.next != c.right || l.len + r.len != c.len) continue;
    l.len = c.len;
    l.id = c.id;
    l.next = r.next;
    if (r.next >= 0) syms[size_t(r.next)].prev = c.left;
    r.len = 0;
    consider(l.prev, c.left);
    consider(c.left, l.next);
  }
  for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[size_t(i)].next) out.push_back(syms[size_t(i)].id);
  return out;
}

std::string ScoreBpeTokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  bool first = true;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) fail("{}: token id {} is out of range (vocabulary of {})", source_, id, vocab_size());
    if (id == bos_id || is_eos(id)) continue;
    if (byte_value_[size_t(id)] >= 0) {
      // A dummy-prefix space that fell back to <0x20> (no " " piece) is dropped like the piece would be.
      if (!(first && add_dummy_prefix_ && byte_value_[size_t(id)] == ' ')) out += char(byte_value_[size_t(id)]);
    } else {
      std::string_view p = vocab_.pieces[size_t(id)];
      // The dummy prefix: run.c drops a leading space of the piece after BOS, SentencePiece that of the first.
      if (first && add_dummy_prefix_ && !p.empty() && p[0] == ' ') p.remove_prefix(1);
      out += p;
    }
    first = false;
  }
  return out;
}

}  // namespace lowbit

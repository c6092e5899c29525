// Test doubles for the harness: a byte tokenizer with optional multi-byte pieces, and a model whose logits
// are a hash of the whole prefix (so any mistake in reusing a KV-cache prefix changes the result).
#pragma once
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "eval/harness.h"
#include "io/tokenizer.h"

namespace lowbit::test {

// Ids: 0 unused, 1 = BOS, 2 = EOS, 3 + byte for single bytes, 259 + k for pieces[k]. Greedy longest match.
class FakeTokenizer : public Tokenizer {
 public:
  explicit FakeTokenizer(std::vector<std::string> pieces = {}) : pieces_(std::move(pieces)) {
    bos_id = 1;
    eos_ids = {2};
  }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    size_t i = 0;
    while (i < text.size()) {
      int best = -1;
      size_t best_len = 1;
      for (size_t k = 0; k < pieces_.size(); ++k)
        if (pieces_[k].size() > best_len && text.substr(i, pieces_[k].size()) == pieces_[k])
          best = int(k), best_len = pieces_[k].size();
      ids.push_back(best >= 0 ? 259 + best : 3 + static_cast<unsigned char>(text[i]));
      i += best_len;
    }
    return ids;
  }
  std::string decode(std::span<const int32_t> ids) const override {
    std::string s;
    for (int32_t id : ids) {
      if (id >= 259)
        s += pieces_[size_t(id - 259)];
      else if (id >= 3)
        s += char(id - 3);
    }
    return s;
  }
  int32_t vocab_size() const override { return 259 + int32_t(pieces_.size()); }

 private:
  std::vector<std::string> pieces_;
};

inline uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Logits of position t: a hash of tokens[0..t] (and the position), uniform in [-6, 6).
inline void fake_logits(const std::vector<int32_t>& prefix, int n_vocab, float* row) {
  uint64_t h = 1469598103934665603ull;
  for (int32_t t : prefix) h = splitmix(h ^ uint64_t(uint32_t(t)));
  for (int v = 0; v < n_vocab; ++v)
    row[v] = float(double(splitmix(h + uint64_t(v)) >> 11) * 0x1p-53 * 12.0 - 6.0);
}

class FakeSession : public ScoringSession {
 public:
  FakeSession(int n_vocab, int max_seq, int64_t* calls)
      : n_vocab_(n_vocab), max_seq_(max_seq), calls_(calls) {}
  int n_past() const override { return int(tokens_.size()); }
  void truncate(int n) override {
    if (size_t(n) < tokens_.size()) tokens_.resize(size_t(n));
  }
  void forward(std::span<const int32_t> tokens, int first_logit_row, float* logits) override {
    if (calls_) *calls_ += int64_t(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens_.push_back(tokens[i]);
      if (tokens_.size() > size_t(max_seq_)) throw std::runtime_error("fake session overflow");
      if (int(i) >= first_logit_row)
        fake_logits(tokens_, n_vocab_, logits + (i - size_t(first_logit_row)) * size_t(n_vocab_));
    }
  }
  // Row r sees the held tokens, its group's trunk up to r (a trunk row) or the whole trunk and its branch up
  // to r (a branch row); the first group's trunk extends the held tokens.
  void forward_branches(std::span<const int32_t> tokens, std::span<const BranchGroup> groups,
                        std::span<const int> logit_rows, float* logits) override {
    if (calls_) *calls_ += int64_t(tokens.size());
    if (tokens_.size() + tokens.size() > size_t(max_seq_)) throw std::runtime_error("fake session overflow");
    std::vector<std::vector<int32_t>> prefix(tokens.size());  // each row's visible tokens, itself last
    size_t row = 0;
    auto at = [&](size_t r) {
      if (r >= tokens.size()) throw std::runtime_error("fake session: groups overrun the batch");
      return tokens[r];
    };
    for (const BranchGroup& g : groups) {
      std::vector<int32_t> seen = tokens_;
      for (int r = 0; r < g.trunk; ++r, ++row) {
        seen.push_back(at(row));
        prefix[row] = seen;
      }
      for (int len : g.branches) {
        std::vector<int32_t> own = seen;
        for (int r = 0; r < len; ++r, ++row) {
          own.push_back(at(row));
          prefix[row] = own;
        }
      }
    }
    if (row != tokens.size()) throw std::runtime_error("fake session: groups do not tile the batch");
    tokens_.insert(tokens_.end(), tokens.begin(), tokens.begin() + groups.front().trunk);
    for (size_t i = 0; i < logit_rows.size(); ++i)
      fake_logits(prefix.at(size_t(logit_rows[i])), n_vocab_, logits + i * size_t(n_vocab_));
  }
  int max_tokens() const override { return max_seq_; }

 private:
  std::vector<int32_t> tokens_;
  int n_vocab_, max_seq_;
  int64_t* calls_;
};

class FakeSource : public LogitSource {
 public:
  FakeSource(int n_vocab, int max_length) : n_vocab_(n_vocab), max_length_(max_length) {}
  int n_vocab() const override { return n_vocab_; }
  int max_length() const override { return max_length_; }
  std::unique_ptr<ScoringSession> new_session() const override {
    return std::make_unique<FakeSession>(n_vocab_, max_length_, nullptr);
  }

 private:
  int n_vocab_, max_length_;
};

// Reference: score one sequence from scratch in double precision.
inline double reference_logprob(const std::vector<int32_t>& tokens, int n_score, int n_vocab, bool* greedy) {
  double total = 0;
  *greedy = true;
  std::vector<float> row(static_cast<size_t>(n_vocab));
  for (size_t p = tokens.size() - size_t(n_score); p < tokens.size(); ++p) {
    std::vector<int32_t> prefix(tokens.begin(), tokens.begin() + std::ptrdiff_t(p));
    fake_logits(prefix, n_vocab, row.data());
    double m = row[0];
    size_t am = 0;
    for (size_t v = 0; v < row.size(); ++v)
      if (row[v] > m) m = row[v], am = v;
    double s = 0;
    for (float x : row) s += std::exp(double(x) - m);
    total += double(row[size_t(tokens[p])]) - m - std::log(s);
    *greedy = *greedy && am == size_t(tokens[p]);
  }
  return total;
}

}  // namespace lowbit::test

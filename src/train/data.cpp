#include "train/data.h"

#include <algorithm>

#include "core/error.h"
#include "core/json.h"
#include "core/mmap.h"
#include "core/paths.h"

namespace lowbit {

int64_t count_loss_tokens(const TrainExample& ex) {
  return std::count_if(ex.labels.begin(), ex.labels.end(), [](int32_t l) { return l != kIgnoreLabel; });
}

// ---- Alpaca

namespace {

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

struct RawRecord {
  std::string_view text;
  int64_t line;
};

// The elements of a top-level JSON array as unparsed text with the line each starts on, so that a bad record
// can be named by its line (nlohmann's parser reports no positions for values). Only strings and bracket
// depth are tracked; each element's own syntax is checked when it is parsed.
std::vector<RawRecord> split_json_array(std::string_view s, const std::string& name) {
  std::vector<RawRecord> out;
  size_t i = s.find('[') + 1;
  int64_t line = 1 + std::count(s.begin(), s.begin() + i, '\n');
  const int64_t array_line = line;
  auto skip_blank = [&] {
    for (; i < s.size() && is_blank(s[i]); ++i) line += s[i] == '\n';
  };
  bool closed = false;
  while (!closed) {
    skip_blank();
    if (i == s.size()) fail("{}:{}: bad JSON: the array opened here is not closed", name, array_line);
    if (s[i] == ']' && out.empty()) {
      ++i;
      break;
    }
    const size_t start = i;
    const int64_t start_line = line;
    int64_t depth = 0;
    for (; i < s.size(); ++i) {
      const char c = s[i];
      if (c == '"') {
        for (++i; i < s.size() && s[i] != '"'; ++i) {
          line += s[i] == '\n';
          if (s[i] == '\\') ++i;
        }
        if (i >= s.size()) fail("{}:{}: bad JSON: unterminated string", name, start_line);
        continue;
      }
      if (c == '\n') ++line;
      if (c == '[' || c == '{') ++depth;
      if ((c == ']' || c == '}') && depth-- == 0) break;
      if (c == ',' && depth == 0) break;
    }
    if (i == s.size())
      fail("{}:{}: bad JSON: the array opened at line {} is not closed", name, start_line, array_line);
    if (start == i) fail("{}:{}: bad JSON: expected a record", name, start_line);
    out.push_back({s.substr(start, i - start), start_line});
    closed = s[i] == ']';
    ++i;
  }
  skip_blank();
  if (i != s.size()) fail("{}:{}: bad JSON: text after the array", name, line);
  if (out.empty()) fail("{}:{}: the array holds no records", name, array_line);
  return out;
}

// One JSON Lines record per non-blank line.
std::vector<RawRecord> split_json_lines(std::string_view s) {
  std::vector<RawRecord> out;
  int64_t line = 1;
  for (size_t pos = 0; pos < s.size(); ++line) {
    size_t end = std::min(s.find('\n', pos), s.size());
    std::string_view l = s.substr(pos, end - pos);
    if (std::any_of(l.begin(), l.end(), [](char c) { return !is_blank(c); })) out.push_back({l, line});
    pos = end + 1;
  }
  return out;
}

std::string string_field(const Json& j, const char* key, bool optional, const std::string& name,
                         int64_t line) {
  auto it = j.find(key);
  if (it == j.end() || (optional && it->is_null())) {
    if (optional) return "";
    fail("{}:{}: missing field '{}'", name, line, key);
  }
  if (!it->is_string())
    fail("{}:{}: field '{}' is not a string (it is {})", name, line, key, it->type_name());
  return it->get<std::string>();
}

AlpacaRecord parse_record(const RawRecord& raw, const std::string& name) {
  Json j;
  try {
    j = Json::parse(raw.text.begin(), raw.text.end());
  } catch (const Json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 5: ...": positions are within the
    // record.
    std::string msg = e.what();
    if (size_t p = msg.find("] "); p != std::string::npos) msg = msg.substr(p + 2);
    fail("{}:{}: bad JSON in the record starting here: {}", name, raw.line, msg);
  }
  if (!j.is_object())
    fail("{}:{}: a record must be a JSON object (this is {})", name, raw.line, j.type_name());
  AlpacaRecord r;
  r.instruction = string_field(j, "instruction", false, name, raw.line);
  r.input = string_field(j, "input", true, name, raw.line);
  r.output = string_field(j, "output", false, name, raw.line);
  r.line = raw.line;
  return r;
}

}  // namespace

std::vector<AlpacaRecord> parse_alpaca(std::string_view text, const std::string& name) {
  const auto first = std::find_if(text.begin(), text.end(), [](char c) { return !is_blank(c); });
  if (first == text.end()) fail("{}:1: empty file (no Alpaca records)", name);
  const std::vector<RawRecord> raw = *first == '[' ? split_json_array(text, name) : split_json_lines(text);
  std::vector<AlpacaRecord> out;
  out.reserve(raw.size());
  for (const RawRecord& r : raw) out.push_back(parse_record(r, name));
  return out;
}

std::vector<AlpacaRecord> read_alpaca_file(const std::string& path) {
  return parse_alpaca(read_file(path), path);
}

std::string alpaca_default_path(const std::string& data_dir) {
  return data_dir + "/alpaca/alpaca_data.json";
}

std::string alpaca_missing_message(const std::string& data_dir) {
  const char* what =
      "QLoRA and IR-QLoRA fine-tune on Alpaca (tatsu-lab/alpaca, 52002 records); put stanford_alpaca's "
      "alpaca_data.json there (a JSON array or JSON Lines of {instruction, input, output}) or pass such a "
      "file";
  if (data_dir.empty()) return fmt::format("Alpaca data not found: no data dir (set LOWBIT_DATA). {}", what);
  const std::string p = alpaca_default_path(data_dir);
  if (path_exists(p)) return "";
  return fmt::format("{}: Alpaca data not found. {}", p, what);
}

std::string alpaca_prompt(const AlpacaRecord& r) {
  // qlora.py ALPACA_PROMPT_DICT, chosen as extract_alpaca_dataset does (input != "").
  if (!r.input.empty())
    return "Below is an instruction that describes a task, paired with an input that provides further "
           "context. "
           "Write a response that appropriately completes the request.\n\n### Instruction:\n" +
           r.instruction + "\n\n### Input:\n" + r.input + "\n\n### Response: ";
  return "Below is an instruction that describes a task. Write a response that appropriately completes the "
         "request.\n\n### Instruction:\n" +
         r.instruction + "\n\n### Response: ";
}

TrainExample alpaca_example(const AlpacaRecord& r, const Tokenizer& tok, const AlpacaOptions& opt) {
  if (opt.source_max_len < 1 || opt.target_max_len < 1)
    fail("Alpaca source and target caps must be at least 1 token (got {} and {})", opt.source_max_len,
         opt.target_max_len);
  if (tok.eos_ids.empty()) fail("the tokenizer has no EOS token, which ends every Alpaca target");
  // DataCollatorForCausalLM: source and target tokenized separately, each truncated to its cap from the
  // right.
  std::vector<int32_t> source;
  if (tok.bos_id >= 0) source.push_back(tok.bos_id);
  const std::vector<int32_t> prompt = tok.encode(alpaca_prompt(r));
  source.insert(source.end(), prompt.begin(), prompt.end());
  source.resize(std::min<size_t>(source.size(), size_t(opt.source_max_len)));
  std::vector<int32_t> target = tok.encode(r.output);
  target.push_back(tok.eos_ids.front());
  target.resize(std::min<size_t>(target.size(), size_t(opt.target_max_len)));

  TrainExample ex;
  ex.tokens = std::move(source);
  const size_t first_trained = opt.train_on_source ? 1 : ex.tokens.size();
  ex.tokens.insert(ex.tokens.end(), target.begin(), target.end());
  ex.labels.assign(ex.tokens.size(), kIgnoreLabel);
  for (size_t t = std::max<size_t>(first_trained, 1); t < ex.tokens.size(); ++t)
    ex.labels[t - 1] = ex.tokens[t];
  return ex;
}

std::vector<TrainExample> alpaca_examples(std::span<const AlpacaRecord> records, const Tokenizer& tok,
                                          const AlpacaOptions& opt) {
  std::vector<TrainExample> out;
  out.reserve(records.size());
  for (const AlpacaRecord& r : records) out.push_back(alpaca_example(r, tok, opt));
  return out;
}

// ---- Plain text

std::vector<TrainExample> text_windows(std::span<const int32_t> ids, int seq_len, const std::string& name) {
  if (seq_len < 2) fail("{}: a training window needs at least 2 tokens (seq_len {})", name, seq_len);
  const size_t n = ids.size() / size_t(seq_len);
  if (n == 0) fail("{}: {} tokens, fewer than one window of {}", name, ids.size(), seq_len);
  std::vector<TrainExample> out(n);
  for (size_t w = 0; w < n; ++w) {
    const auto win = ids.subspan(w * size_t(seq_len), size_t(seq_len));
    out[w].tokens.assign(win.begin(), win.end());
    out[w].labels.assign(win.begin() + 1, win.end());
    out[w].labels.push_back(kIgnoreLabel);
  }
  return out;
}

std::vector<TrainExample> text_file_examples(const std::string& path, const Tokenizer& tok, int seq_len) {
  return text_windows(tok.encode_with_bos(read_file(path)), seq_len, path);
}

// ---- Order

uint64_t SplitMix64::next() {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::below(uint64_t bound) {
  const uint64_t reject_under = (0 - bound) % bound;  // 2^64 mod bound
  for (;;) {
    const uint64_t r = next();
    if (r >= reject_under) return r % bound;
  }
}

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
  SplitMix64 rng{seed ^ (0x9E3779B97F4A7C15ull * uint64_t(epoch + 1))};
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[size_t(i)], order[rng.below(uint64_t(i) + 1)]);
  return order;
}

BatchSampler::BatchSampler(int64_t n, int batch, uint64_t seed, bool drop_last)
    : n_(n), batch_(batch), seed_(seed), drop_last_(drop_last) {
  if (n < 1) fail("no training examples to sample from");
  if (batch < 1) fail("batch size must be at least 1 (got {})", batch);
  if (drop_last && n < batch) fail("{} training examples do not fill one batch of {}", n, batch);
}

int64_t BatchSampler::batches_per_epoch() const {
  return drop_last_ ? n_ / batch_ : (n_ + batch_ - 1) / batch_;
}

int64_t BatchSampler::epoch_end() const {
  return drop_last_ ? n_ / batch_ * batch_ : n_;
}

void BatchSampler::ensure_order() {
  if (order_epoch_ == state_.epoch) return;
  order_ = epoch_order(n_, seed_, state_.epoch);
  order_epoch_ = state_.epoch;
}

std::vector<int64_t> BatchSampler::next() {
  if (state_.position >= epoch_end()) {
    ++state_.epoch;
    state_.position = 0;
  }
  ensure_order();
  const int64_t k = std::min<int64_t>(batch_, n_ - state_.position);
  std::vector<int64_t> out(order_.begin() + state_.position, order_.begin() + state_.position + k);
  state_.position += k;
  return out;
}

void BatchSampler::restore(const SamplerState& s) {
  if (s.epoch < 0 || s.position < 0 || s.position > epoch_end())
    fail("sampler state epoch {} position {} lies outside an epoch of {} examples", s.epoch, s.position,
         epoch_end());
  state_ = s;
}

std::string BatchSampler::to_json() const {
  Json j = {{"epoch", state_.epoch}, {"position", state_.position},   {"n", n_},
            {"batch", batch_},       {"seed", std::to_string(seed_)}, {"drop_last", drop_last_}};
  return j.dump();
}

void BatchSampler::restore_json(std::string_view text, const std::string& what) {
  const Json j = parse_json_text(text, what);
  auto get_int = [&](const char* key) -> int64_t {
    if (!j.is_object() || !j.contains(key) || !j[key].is_number_integer())
      fail("{}: sampler state needs an integer '{}'", what, key);
    return j[key].get<int64_t>();
  };
  const int64_t epoch = get_int("epoch"), position = get_int("position"), n = get_int("n"),
                batch = get_int("batch");
  if (!j.contains("seed") || !j["seed"].is_string() || !j.contains("drop_last") ||
      !j["drop_last"].is_boolean())
    fail("{}: sampler state needs a string 'seed' and a boolean 'drop_last'", what);
  const std::string seed = std::to_string(seed_);
  if (n != n_ || batch != batch_ || j["seed"] != seed || j["drop_last"] != drop_last_)
    fail("{}: sampler state is for {} examples, batch {}, seed {}, drop_last {}; this run has {}, {}, {}, {}",
         what, n, batch, j["seed"].get<std::string>(), j["drop_last"].get<bool>(), n_, batch_, seed,
         drop_last_);
  restore({epoch, position});
}

}  // namespace lowbit

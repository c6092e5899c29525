// Training examples: Alpaca instruction data built as QLoRA's qlora.py builds it, plain text cut into
// language-modelling windows, and the deterministic, resumable order in which training visits them.
//
// Label convention (already shifted, unlike Hugging Face, whose model shifts labels inside its loss):
// labels[t] is the token the model must predict after reading tokens[0..t], i.e. tokens[t + 1] where that
// token is trained on, and kIgnoreLabel (-100) elsewhere; labels[T-1] is always kIgnoreLabel. The loss of an
// example is Σ_t CE(logits[t], labels[t]) over labels[t] != kIgnoreLabel, which equals HF's
// CrossEntropyLoss(logits[:-1], hf_labels[1:]) with hf_labels = qlora's unshifted labels. HF's Trainer
// divides a batch's summed loss by the number of such labels in the batch (count_loss_tokens).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/tokenizer.h"
#include "train/grad_ops.h"  // kIgnoreLabel

namespace lowbit {

struct TrainExample {
  std::vector<int32_t> tokens;  // (T) input ids
  std::vector<int32_t> labels;  // (T) next-token targets, see the convention above
};

int64_t count_loss_tokens(const TrainExample& ex);

// ---- Alpaca (artidoro/qlora qlora.py: ALPACA_PROMPT_DICT, extract_alpaca_dataset, DataCollatorForCausalLM)

struct AlpacaRecord {
  std::string instruction, input, output;
  int64_t line = 0;  // where the record starts in its file (1-based)
};

// Reads JSON records with string fields "instruction" and "output" and an optional "input" (absent, null or
// "" = no input, where qlora would print a null as "None"; tatsu-lab/alpaca always has the field; other
// fields are ignored). The format is decided by content, not by the file name: a text whose first non-blank
// character is '[' is one JSON array of records (stanford_alpaca's alpaca_data.json); anything else is JSON
// Lines, one record per non-blank line. The first malformed record throws Error with one line "<name>:<line>:
// <problem>": bad JSON, not an object, a missing or non-string field, no records.
std::vector<AlpacaRecord> parse_alpaca(std::string_view text, const std::string& name);
std::vector<AlpacaRecord> read_alpaca_file(const std::string& path);

// Where the Alpaca data set is expected under the data dir (stanford_alpaca's file name), and a message
// saying it is missing with what to do; alpaca_missing_message returns "" when the file is there.
std::string alpaca_default_path(const std::string& data_dir);
std::string alpaca_missing_message(const std::string& data_dir);

// The prompt (qlora's "input" column after extract_alpaca_dataset): prompt_input when the record has a
// non-empty input, prompt_no_input otherwise. Ends with "### Response: " (a trailing space, as upstream).
std::string alpaca_prompt(const AlpacaRecord& r);

struct AlpacaOptions {
  int source_max_len = 384;      // qlora --source_max_len
  int target_max_len = 128;      // qlora --target_max_len
  bool train_on_source = false;  // qlora --train_on_source: also predict the prompt's tokens
};

// tokens = source + target with source = [BOS] + encode(prompt) and target = encode(output) + [EOS], each
// truncated separately to its cap keeping its FIRST tokens (HF truncation_side "right", qlora's default), so
// a long prompt loses its end ("### Response: ") and a long output its EOS, exactly as upstream. qlora
// tokenizes the strings bos_token + prompt and output + eos_token; appending the ids instead is the same
// except where an old transformers slow tokenizer would strip whitespace next to the special token's text.
// BOS is prepended whenever the tokenizer has one (qlora adds it regardless of add_bos_token);
// eos_ids.front() (tokenizer_config.json's eos_token, HF's tokenizer.eos_token) ends the target. Loss on
// target tokens only unless train_on_source (then on every token after the first).
TrainExample alpaca_example(const AlpacaRecord& r, const Tokenizer& tok, const AlpacaOptions& opt = {});
std::vector<TrainExample> alpaca_examples(std::span<const AlpacaRecord> records, const Tokenizer& tok,
                                          const AlpacaOptions& opt = {});

// ---- Plain text (language modelling)

// The whole text tokenized as one stream with one BOS first (encode_with_bos, as the perplexity protocol in
// eval/perplexity.h), cut from token 0 into floor(n / seq_len) non-overlapping windows of seq_len tokens; the
// partial tail is dropped (as there and in HF run_clm's group_texts). Each window is trained on every next
// token inside it: labels[t] = tokens[t + 1], labels[seq_len - 1] ignored, so a window has seq_len - 1 loss
// tokens like a perplexity window. Throws Error naming `name` when the text is shorter than one window.
std::vector<TrainExample> text_windows(std::span<const int32_t> ids, int seq_len, const std::string& name);
std::vector<TrainExample> text_file_examples(const std::string& path, const Tokenizer& tok, int seq_len);

// ---- Order: shuffled epochs in micro-batches, resumable

// SplitMix64 (Steele, Lea, Flood 2014; the generator java.util.SplittableRandom and xoshiro's seeding use):
// state += 0x9E3779B97F4A7C15, then two xor-shift-multiply rounds. Implemented here so that orders do not
// depend on the standard library's distributions.
struct SplitMix64 {
  uint64_t state;
  uint64_t next();
  // Uniform in [0, bound) for bound > 0, by rejection of the top (2^64 mod bound) values (no modulo bias).
  uint64_t below(uint64_t bound);
};

// The visiting order of epoch `epoch`: a Fisher-Yates shuffle of 0..n-1 (for i = n-1 down to 1: swap i with
// below(i + 1)) driven by SplitMix64 with state seed ^ (0x9E3779B97F4A7C15 * (epoch + 1)). Not the order of
// torch's RandomSampler, which no C++ code reproduces without torch's generator.
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch);

// Where training is in the data: `position` examples of epoch `epoch` have been handed out.
struct SamplerState {
  int64_t epoch = 0;
  int64_t position = 0;
};

// Micro-batches of `batch` example indices in epoch_order; a batch never spans two epochs. The last batch of
// an epoch holds the remainder (HF dataloader_drop_last = False) unless drop_last. Saving state() after a
// batch and restoring it in a fresh sampler with the same n, batch, seed and drop_last yields the same
// batches from there on.
class BatchSampler {
 public:
  BatchSampler(int64_t n, int batch, uint64_t seed, bool drop_last = false);
  std::vector<int64_t> next();
  const SamplerState& state() const { return state_; }
  void restore(const SamplerState& s);  // throws Error when s lies outside the data
  int64_t batches_per_epoch() const;

  // {"epoch", "position", "n", "batch", "seed", "drop_last"} as JSON text (seed as a decimal string: JSON
  // numbers lose bits above 2^53 in many readers). restore_json throws Error naming `what` when the text is
  // not such an object or describes different data or batching.
  std::string to_json() const;
  void restore_json(std::string_view text, const std::string& what);

 private:
  int64_t epoch_end() const;  // examples handed out per epoch
  void ensure_order();
  int64_t n_;
  int batch_;
  uint64_t seed_;
  bool drop_last_;
  SamplerState state_;
  int64_t order_epoch_ = -1;  // the epoch order_ belongs to
  std::vector<int64_t> order_;
};

}  // namespace lowbit

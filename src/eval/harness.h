// Log-likelihood scoring of task requests and the metrics of lm-evaluation-harness v0.3.
//
// Token split (issue 4; the rule of lm-eval >= 0.4's _encode_pair): for a context c and continuation x,
//   whole = [BOS] + tokens(c + x),  ctx = [BOS] + tokens(c),
// and the scored tokens are whole[len(ctx):], each conditioned on everything before it in `whole`. Encoding
// the concatenation (not tokens(c) + tokens(x)) keeps the text's natural tokenization when a token spans the
// boundary. When whole is longer than max_length (2048) its first tokens are dropped, BOS included, keeping
// the last max_length ("truncated"; lm-eval v0.3 instead keeps max_length + 1 and feeds all but the last).
//
// Speed: the choices of an example usually share a prefix (the context, or WinoGrande's sentence start) and
// an MMLU subject's questions share the 5-shot header. Each worker thread owns one ScoringSession (a KV
// cache) and remembers the tokens it holds; a new example truncates the cache to the longest common prefix
// with what it needs. The rest of the shared prefix and every choice's remaining tokens then run as one
// batched forward, the choices as branches that each attend to the prefix and to themselves only, so the
// weights are streamed once per example rather than once per choice and prefix; choices whose remaining
// tokens are identical (MMLU's " A".." D" all need just the last context token's logits) run once. Results
// equal scoring every sequence from scratch (up to the model's floating-point behaviour for different
// chunkings). With several workers, each runs its
// sequences single-threaded (the model's OpenMP loops nest serially, OpenBLAS is held to one thread): scoring
// is many short forwards, where per-call thread fork/join costs more than it gains; threads = 1 instead lets
// the model use every core inside each forward. Memory: one KV cache of max_length positions per worker.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/json.h"
#include "eval/task_prompts.h"
#include "io/tokenizer.h"
#include "kernels/logits.h"
#include "model/llama.h"

namespace lowbit {

// One sequence's model state: tokens at positions [0, n_past) are in its cache.
class ScoringSession {
 public:
  virtual ~ScoringSession() = default;
  virtual int n_past() const = 0;
  virtual void truncate(int n) = 0;  // drop positions >= n
  // Appends tokens at positions n_past.. and writes the next-token logits of tokens[first_logit_row..] to
  // logits, (tokens.size() - first_logit_row, n_vocab) row-major; first_logit_row == tokens.size() (logits
  // may be null) only fills the cache.
  virtual void forward(std::span<const int32_t> tokens, int first_logit_row, float* logits) = 0;
  // Groups of a trunk and branches after it, as one batch (LlamaModel::forward_branches): every row sees
  // the cache; a trunk row its trunk's earlier rows, a branch row its group's trunk and its own earlier
  // rows. The first group's trunk is appended to the cache like forward() does, the rest dropped. logits
  // receives (logit_rows.size(), n_vocab), the next-token logits of those batch rows. Needs n_past +
  // tokens.size() <= max_tokens().
  virtual void forward_branches(std::span<const int32_t> tokens, std::span<const BranchGroup> groups,
                                std::span<const int> logit_rows, float* logits) = 0;
  virtual int max_tokens() const = 0;  // positions the session holds
};

// The model side: a vocabulary size and fresh sessions, one per worker thread (sessions are used by one
// thread at a time; new_session is called from worker threads, so it must be thread-safe).
class LogitSource {
 public:
  virtual ~LogitSource() = default;
  virtual int n_vocab() const = 0;
  virtual int max_length() const = 0;  // positions a session holds
  virtual std::unique_ptr<ScoringSession> new_session() const = 0;
};

// One choice as tokens: the (possibly truncated) whole sequence and how many trailing tokens are scored.
struct TokenizedChoice {
  std::vector<int32_t> tokens;
  int n_score = 0;
  bool truncated = false;
};
// Throws when a continuation does not fit (n_score > max_length - 1) or nothing precedes it (no BOS, empty
// context). A continuation whose whole is no longer than its context scores 0 tokens (log-probability 0).
std::vector<TokenizedChoice> tokenize_example(const Tokenizer& tok, const Example& ex, int max_length);

struct ChoiceScore {
  double logprob = 0;  // sum over scored tokens of log softmax(logits)[token]
  bool greedy = true;  // every scored token is the first argmax of its logits (torch.argmax)
  int n_tokens = 0;
  bool truncated = false;
};

class PrefixScorer {
 public:
  PrefixScorer(std::unique_ptr<ScoringSession> session, int n_vocab);
  // One example's choices.
  std::vector<ChoiceScore> score(const std::vector<TokenizedChoice>& choices);
  // Several examples in as few forwards as the session and the limits below allow: consecutive runs of them,
  // each run one forward with a group (trunk + branches) per example after what the run shares (a run of one
  // goes through score()). Results equal score() on each, up to float summation order.
  std::vector<std::vector<ChoiceScore>> score_batch(std::span<const std::vector<TokenizedChoice>> examples);
  int64_t tokens_forwarded() const { return forwarded_; }

 private:
  // At most kMaxBatchTokens tokens per forward (the trunk of a lone example aside): they bound the block's
  // activations while giving the GEMMs enough rows that packing the weights is a small part of each call.
  // kMaxLogitFloats bounds the logits buffer (64 MiB: 524 rows of a 32000-token vocabulary).
  static constexpr size_t kMaxBatchTokens = 1536, kMaxLogitFloats = size_t(1) << 24;
  struct Plan {
    struct Branch {
      std::span<const int32_t> run;
      size_t first_row = 0;  // first row of `run` whose logits are needed
      size_t batch_row = 0;  // where those logits land in logits_ (set per batch)
    };
    const TokenizedChoice* first = nullptr;  // the first scored choice; null: nothing to score
    size_t shared = 0;                       // leading tokens all scored choices share
    std::vector<Branch> branches;            // distinct branches
    std::vector<size_t> branch_of;           // per choice; SIZE_MAX when unscored
  };
  static Plan plan(const std::vector<TokenizedChoice>& choices);
  size_t max_logit_rows() const;  // kMaxLogitFloats in rows of n_vocab (at least 1)
  static void add_branches(Plan& p, size_t b0, size_t b1, std::vector<int32_t>& batch, BranchGroup& group,
                           std::vector<int>& rows);
  void collect(const Plan& p, const std::vector<TokenizedChoice>& choices, size_t b0, size_t b1,
               std::vector<ChoiceScore>& out) const;
  size_t reuse(std::span<const int32_t> tokens, size_t limit);
  void run(std::span<const int32_t> batch, std::span<const BranchGroup> groups, std::span<const int> rows);
  std::unique_ptr<ScoringSession> session_;
  std::vector<int32_t> held_;  // the tokens in the session's cache
  std::vector<float> logits_;
  int n_vocab_;
  int64_t forwarded_ = 0;
};

struct ScoreOptions {
  int max_length = 2048;
  int threads = 0;  // concurrent sessions; 0 = lowbit::num_threads()
  bool quiet = false;
  std::string label = "eval";  // progress line label
};
struct ScoreStats {
  int64_t requests = 0, tokens_forwarded = 0, truncated_examples = 0;
  double seconds = 0;
};

// Scores every example's choices. Examples run longest first within each Example::group (groups in order),
// over `threads` workers. Tokenizer::encode is called from the workers concurrently (it is const).
std::vector<std::vector<ChoiceScore>> score_examples(const std::vector<Example>& examples,
                                                     const Tokenizer& tok, const LogitSource& src,
                                                     const ScoreOptions& opt, ScoreStats* stats = nullptr);

// numpy.argmax: the first NaN if any, else the first maximum.
size_t np_argmax(std::span<const double> v);
// lm-eval v0.3 metrics.mean_stderr: sample standard deviation (n - 1) / sqrt(n); for 0/1 values that is
// sqrt(p (1 - p) / (n - 1)). NaN when n < 2.
double mean_stderr(std::span<const double> v);

struct ExampleResult {
  double acc = 0, acc_norm = 0;
  size_t pred = 0, pred_norm = 0;
};
// acc: argmax of summed log-probabilities == gold; acc_norm: argmax of logprob / utf8_length(choice_text).
ExampleResult multiple_choice_result(const Example& ex, const std::vector<ChoiceScore>& scores);

struct EvalOptions {
  std::vector<std::string> tasks;  // known_tasks() names
  std::string data_dir;            // empty: find_search_paths()
  int limit = 0;                   // first N examples of each task (per MMLU subject); 0 = all
  int num_fewshot = -1;            // -1: task default (MMLU 5, others 0)
  int max_length = 2048;           // capped by the model's context
  int threads = 0;                 // concurrent sequences; 0 = all
  std::string log_path;            // per-example JSONL (each choice's log-probability); empty = none
  std::string model_name;          // recorded in config
  std::string hellaswag_file = "hellaswag/hellaswag_val_full.txt";
  bool quiet = false;
};

// Loads and scores opts.tasks; returns {"results", "versions", "config", "data_files", "timing"} in the shape
// of lm-eval's output (task -> metric -> value, "<metric>_stderr" beside each).
Json run_eval(const LogitSource& src, const Tokenizer& tok, const EvalOptions& opts);
// The same over a LlamaModel (harness_model.cpp): sessions are KVCaches of min(opts.max_length, model
// context).
Json run_eval(const LlamaModel& model, const Tokenizer& tok, const EvalOptions& opts);
std::unique_ptr<LogitSource> model_logit_source(const LlamaModel& model, int max_length);
// Task scoring is many short forwards, in which widening bf16/f16 weights for every call costs about as
// much as the arithmetic: keep exact f32 copies (LlamaModel::keep_f32_weights) when they need at most half
// of the memory available now; otherwise keep the stored dtype (slower, same results). Prints which unless
// quiet.
void widen_weights_for_scoring(LlamaModel& model, bool quiet);

}  // namespace lowbit

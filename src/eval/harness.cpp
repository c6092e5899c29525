#include "eval/harness.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <map>
#include <numeric>

#include "core/blas.h"
#include "core/error.h"
#include "core/mmap.h"
#include "core/paths.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/sys.h"
#include "eval/task_registry.h"
#include "eval/task_text.h"

namespace lowbit {

std::vector<TokenizedChoice> tokenize_example(const Tokenizer& tok, const Example& ex, int max_length) {
  LOWBIT_ASSERT(ex.contexts.size() == ex.continuations.size() && !ex.contexts.empty() && max_length > 1);
  std::vector<TokenizedChoice> out;
  const std::string* last_ctx = nullptr;
  size_t ctx_len = 0;
  for (size_t i = 0; i < ex.contexts.size(); ++i) {
    if (!last_ctx || *last_ctx != ex.contexts[i]) {  // contexts repeat across choices: encode once
      ctx_len = tok.encode_with_bos(ex.contexts[i]).size();
      last_ctx = &ex.contexts[i];
    }
    TokenizedChoice c;
    c.tokens = tok.encode_with_bos(ex.contexts[i] + ex.continuations[i]);
    size_t n_score = c.tokens.size() > ctx_len ? c.tokens.size() - ctx_len : 0;
    if (c.tokens.size() > size_t(max_length)) {
      c.tokens.erase(c.tokens.begin(), c.tokens.end() - max_length);
      c.truncated = true;
    }
    if (n_score > 0 && n_score >= c.tokens.size())
      fail(
          "continuation '{}' of {} tokens has no context token before it (sequence of {} tokens, max length "
          "{})",
          ex.continuations[i].substr(0, 60), n_score, c.tokens.size(), max_length);
    c.n_score = int(n_score);
    out.push_back(std::move(c));
  }
  return out;
}

PrefixScorer::PrefixScorer(std::unique_ptr<ScoringSession> session, int n_vocab)
    : session_(std::move(session)), n_vocab_(n_vocab) {}

// Length of the common prefix of a and b, at most limit.
static size_t common_prefix(std::span<const int32_t> a, std::span<const int32_t> b, size_t limit) {
  size_t k = 0, lim = std::min({limit, a.size(), b.size()});
  while (k < lim && a[k] == b[k]) ++k;
  return k;
}

size_t PrefixScorer::max_logit_rows() const {
  return std::max<size_t>(1, kMaxLogitFloats / size_t(n_vocab_));
}

PrefixScorer::Plan PrefixScorer::plan(const std::vector<TokenizedChoice>& choices) {
  Plan p;
  // shared: tokens every scored choice has in common, stopping one short of each choice's context end so that
  // every choice's own branch starts at or before its last context token (whose logits predict the first
  // scored token).
  for (const TokenizedChoice& c : choices) {
    if (c.n_score == 0) continue;
    size_t ctx_len = c.tokens.size() - size_t(c.n_score);
    LOWBIT_ASSERT(ctx_len >= 1);
    if (!p.first) {
      p.first = &c;
      p.shared = ctx_len - 1;
      continue;
    }
    p.shared = common_prefix(c.tokens, p.first->tokens, std::min(p.shared, ctx_len - 1));
  }
  // Each scored choice runs tokens [shared, len - 1) as a branch after the shared part (its last token is
  // only a target); its logit rows start at its last context token. Choices with identical branch tokens
  // share one branch, whose rows cover all of theirs.
  p.branch_of.assign(choices.size(), SIZE_MAX);
  for (size_t i = 0; i < choices.size(); ++i) {
    const TokenizedChoice& c = choices[i];
    if (c.n_score == 0) continue;
    auto run = std::span(c.tokens).subspan(p.shared, c.tokens.size() - 1 - p.shared);
    size_t first_row = c.tokens.size() - size_t(c.n_score) - 1 - p.shared;
    size_t b = 0;
    while (b < p.branches.size() && !std::ranges::equal(p.branches[b].run, run)) ++b;
    if (b == p.branches.size()) p.branches.push_back({run, first_row});
    p.branches[b].first_row = std::min(p.branches[b].first_row, first_row);
    p.branch_of[i] = b;
  }
  return p;
}

// Appends branches [b0, b1) of p to the batch: tokens, the group's branch lengths, their logit rows.
void PrefixScorer::add_branches(Plan& p, size_t b0, size_t b1, std::vector<int32_t>& batch,
                                BranchGroup& group, std::vector<int>& rows) {
  for (size_t b = b0; b < b1; ++b) {
    Plan::Branch& br = p.branches[b];
    br.batch_row = rows.size();
    for (size_t r = br.first_row; r < br.run.size(); ++r) rows.push_back(int(batch.size() + r));
    batch.insert(batch.end(), br.run.begin(), br.run.end());
    group.branches.push_back(int(br.run.size()));
  }
}

// Sums the log-probabilities of the choices whose branches are in [b0, b1), from logits_.
void PrefixScorer::collect(const Plan& p, const std::vector<TokenizedChoice>& choices, size_t b0, size_t b1,
                           std::vector<ChoiceScore>& out) const {
  for (size_t i = 0; i < choices.size(); ++i) {
    if (p.branch_of[i] < b0 || p.branch_of[i] >= b1) continue;
    const TokenizedChoice& c = choices[i];
    const Plan::Branch& br = p.branches[p.branch_of[i]];
    const size_t ctx_len = c.tokens.size() - size_t(c.n_score);
    // Row of the last context token within the branch's logits.
    const size_t row0 = br.batch_row + (ctx_len - 1 - p.shared - br.first_row);
    ChoiceScore& s = out[i];
    for (int r = 0; r < c.n_score; ++r) {
      bool greedy = false;
      s.logprob += log_softmax_at(logits_.data() + (row0 + size_t(r)) * size_t(n_vocab_), n_vocab_,
                                  c.tokens[ctx_len + size_t(r)], &greedy);
      s.greedy = s.greedy && greedy;
    }
  }
}

// Truncates the cache to the longest prefix of `tokens` (at most `limit`) it already holds.
size_t PrefixScorer::reuse(std::span<const int32_t> tokens, size_t limit) {
  const size_t keep = common_prefix(held_, tokens, limit);
  session_->truncate(int(keep));
  held_.resize(keep);
  return keep;
}

void PrefixScorer::run(std::span<const int32_t> batch, std::span<const BranchGroup> groups,
                       std::span<const int> rows) {
  logits_.resize(rows.size() * size_t(n_vocab_));
  session_->forward_branches(batch, groups, rows, logits_.data());
  forwarded_ += int64_t(batch.size());
  held_.insert(held_.end(), batch.begin(), batch.begin() + groups.front().trunk);  // the first trunk stays
  LOWBIT_ASSERT(session_->n_past() == int(held_.size()));
}

static std::vector<ChoiceScore> unscored(const std::vector<TokenizedChoice>& choices) {
  std::vector<ChoiceScore> out(choices.size());
  for (size_t i = 0; i < choices.size(); ++i) {
    out[i].truncated = choices[i].truncated;
    out[i].n_tokens = choices[i].n_score;
  }
  return out;
}

std::vector<ChoiceScore> PrefixScorer::score(const std::vector<TokenizedChoice>& choices) {
  std::vector<ChoiceScore> out = unscored(choices);
  Plan p = plan(choices);
  if (!p.first) return out;  // nothing to score
  // Reuse what the cache already holds (e.g. the previous question's 5-shot header); the rest of the shared
  // part is the trunk of the first batch. Batches of consecutive branches follow, as many as the session
  // holds after the shared part and the limits allow (a lone branch always fits: the whole sequence does).
  const size_t keep = reuse(p.first->tokens, p.shared);
  std::span<const int32_t> trunk = std::span(p.first->tokens).subspan(keep, p.shared - keep);
  const size_t room = std::min(size_t(session_->max_tokens()) - p.shared, kMaxBatchTokens);
  const size_t max_rows = max_logit_rows();
  std::vector<int32_t> batch;
  std::vector<int> rows;
  auto n_rows = [&](size_t b) { return p.branches[b].run.size() - p.branches[b].first_row; };
  for (size_t b0 = 0, b1 = 0; b0 < p.branches.size(); b0 = b1) {
    size_t branch_tokens = p.branches[b0].run.size(), logit_rows = n_rows(b0);
    for (b1 = b0 + 1; b1 < p.branches.size() && branch_tokens + p.branches[b1].run.size() <= room &&
                      logit_rows + n_rows(b1) <= max_rows;
         ++b1) {
      branch_tokens += p.branches[b1].run.size();
      logit_rows += n_rows(b1);
    }
    batch.assign(trunk.begin(), trunk.end());
    rows.clear();
    BranchGroup g[1];
    g[0].trunk = int(trunk.size());
    add_branches(p, b0, b1, batch, g[0], rows);
    run(batch, g, rows);
    collect(p, choices, b0, b1, out);
    trunk = {};
  }
  return out;
}

std::vector<std::vector<ChoiceScore>> PrefixScorer::score_batch(
    std::span<const std::vector<TokenizedChoice>> examples) {
  std::vector<std::vector<ChoiceScore>> out;
  std::vector<Plan> plans;
  std::vector<size_t> scored;  // examples with something to score
  for (size_t e = 0; e < examples.size(); ++e) {
    out.push_back(unscored(examples[e]));
    plans.push_back(plan(examples[e]));
    if (plans.back().first) scored.push_back(e);
  }
  // Consecutive runs of examples, each as long as fits the session and the limits: the cache holds what
  // the run's examples all share (e.g. a subject's 5-shot header) and each is a group whose trunk is the
  // rest of its shared part. A run of one goes through score().
  const size_t max_rows = max_logit_rows();
  for (size_t i = 0, j = 0; i < scored.size(); i = j) {
    const Plan& p0 = plans[scored[i]];
    size_t common = p0.shared, shared_sum = 0, branch_tokens = 0, n_rows = 0;
    for (j = i; j < scored.size(); ++j) {
      const Plan& p = plans[scored[j]];
      const size_t k = common_prefix(p.first->tokens, p0.first->tokens, std::min(common, p.shared));
      size_t bt = 0, rows = 0;
      for (const Plan::Branch& br : p.branches) {
        bt += br.run.size();
        rows += br.run.size() - br.first_row;
      }
      const size_t n_tokens = shared_sum + p.shared + branch_tokens + bt - (j - i + 1) * k;
      if (j > i && (k + n_tokens > size_t(session_->max_tokens()) || n_tokens > kMaxBatchTokens ||
                    n_rows + rows > max_rows))
        break;
      common = k;
      shared_sum += p.shared;
      branch_tokens += bt;
      n_rows += rows;
    }
    if (j - i == 1) {
      out[scored[i]] = score(examples[scored[i]]);
      continue;
    }
    const size_t keep = reuse(p0.first->tokens, common);
    if (common > keep) {
      auto fill = std::span(p0.first->tokens).subspan(keep, common - keep);
      session_->forward(fill, int(fill.size()), nullptr);
      held_.insert(held_.end(), fill.begin(), fill.end());
      forwarded_ += int64_t(fill.size());
    }
    std::vector<int32_t> batch;
    std::vector<int> rows;
    std::vector<BranchGroup> groups(j - i);
    for (size_t g = 0; g < j - i; ++g) {
      Plan& p = plans[scored[i + g]];
      batch.insert(batch.end(), p.first->tokens.begin() + std::ptrdiff_t(common),
                   p.first->tokens.begin() + std::ptrdiff_t(p.shared));
      groups[g].trunk = int(p.shared - common);
      add_branches(p, 0, p.branches.size(), batch, groups[g], rows);
    }
    run(batch, groups, rows);
    for (size_t g = i; g < j; ++g)
      collect(plans[scored[g]], examples[scored[g]], 0, plans[scored[g]].branches.size(), out[scored[g]]);
  }
  return out;
}

std::vector<std::vector<ChoiceScore>> score_examples(const std::vector<Example>& examples,
                                                     const Tokenizer& tok, const LogitSource& src,
                                                     const ScoreOptions& opt, ScoreStats* stats) {
  Timer timer;
  int max_length = std::min(opt.max_length, src.max_length());
  // Longest first within each group, groups in order: big requests do not straggle at the end, and an MMLU
  // subject's questions stay together so that each worker's cache keeps the subject's 5-shot header.
  std::vector<size_t> order(examples.size());
  std::vector<size_t> chars(examples.size(), 0);
  for (size_t i = 0; i < examples.size(); ++i) {
    order[i] = i;
    for (size_t c = 0; c < examples[i].contexts.size(); ++c)
      chars[i] = std::max(chars[i], examples[i].contexts[c].size() + examples[i].continuations[c].size());
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (examples[a].group != examples[b].group) return examples[a].group < examples[b].group;
    return chars[a] > chars[b];
  });
  int64_t n_requests = 0;
  for (const Example& e : examples) n_requests += int64_t(e.continuations.size());
  // Batches of consecutive examples (one group each) scored in one forward: about kBatchChars characters of
  // text beyond what the batch's first example shares with them (an MMLU subject's header counts once), some
  // 1500 tokens: enough rows for efficient GEMMs (PrefixScorer::score_batch splits what does not fit).
  constexpr size_t kBatchChars = 6000;
  std::vector<size_t> batch_start;
  for (size_t k = 0, used = 0; k < order.size(); ++k) {
    const Example& ex = examples[order[k]];
    size_t len = 0, ctx = 0;
    for (size_t c = 0; c < ex.contexts.size(); ++c) {
      len += ex.continuations[c].size();
      ctx = std::max(ctx, ex.contexts[c].size());
    }
    const Example* head = batch_start.empty() ? nullptr : &examples[order[batch_start.back()]];
    if (head && head->group == ex.group) {
      const std::string &a = head->contexts[0], &b = ex.contexts[0];
      ctx -=
          size_t(std::mismatch(a.begin(), a.begin() + std::ptrdiff_t(std::min(a.size(), b.size())), b.begin())
                     .first -
                 a.begin());
    }
    if (!head || head->group != ex.group || used + len + ctx > kBatchChars) {
      batch_start.push_back(k);
      used = 0;
    }
    used += len + ctx;
  }
  batch_start.push_back(order.size());

  std::vector<std::vector<ChoiceScore>> scores(examples.size());
  Progress progress(opt.label, examples.size(), "req", opt.quiet);
  int threads = opt.threads > 0 ? opt.threads : num_threads();
  threads = int(std::max<size_t>(1, std::min<size_t>(size_t(threads), batch_start.size() - 1)));
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  int64_t forwarded = 0, truncated = 0;

  const size_t n_batches = batch_start.size() - 1;
  auto work = [&](PrefixScorer& scorer, size_t b) {
    std::vector<std::vector<TokenizedChoice>> toks;
    int64_t any_trunc = 0, requests = 0;
    for (size_t k = batch_start[b]; k < batch_start[b + 1]; ++k) {
      const Example& ex = examples[order[k]];
      toks.push_back(tokenize_example(tok, ex, max_length));
      any_trunc += std::any_of(toks.back().begin(), toks.back().end(),
                               [](const TokenizedChoice& c) { return c.truncated; });
      requests += int64_t(ex.continuations.size());
    }
    auto got = scorer.score_batch(toks);
    for (size_t k = batch_start[b]; k < batch_start[b + 1]; ++k)
      scores[order[k]] = std::move(got[k - batch_start[b]]);
#pragma omp critical(lowbit_eval_progress)
    {
      truncated += any_trunc;
      progress.add(batch_start[b + 1] - batch_start[b], size_t(requests));
    }
  };
  if (threads == 1) {  // no parallel region, so the model's own loops may use every core
    PrefixScorer scorer(src.new_session(), src.n_vocab());
    for (size_t b = 0; b < n_batches; ++b) work(scorer, b);
    forwarded = scorer.tokens_forwarded();
  } else {
    // Each worker runs its own sequence; the model's OpenMP loops are nested and so run serially, but
    // OpenBLAS (pthread build) would start its own threads for every GEMM: keep it to the calling thread
    // meanwhile.
    BlasOneThread blas_guard;
#pragma omp parallel num_threads(threads)
    {
      try {
        PrefixScorer scorer(src.new_session(), src.n_vocab());
        // Round-robin, not dynamic: which batches a worker runs (and so which prefixes its cache reuses,
        // and the chunking of each forward) is fixed for a given thread count, so results are reproducible.
#pragma omp for schedule(static, 1)
        for (size_t b = 0; b < n_batches; ++b) {
          if (failed.load()) continue;
          try {
            work(scorer, b);
          } catch (...) {
#pragma omp critical(lowbit_eval_error)
            if (!error) error = std::current_exception();
            failed = true;
          }
        }
#pragma omp atomic
        forwarded += scorer.tokens_forwarded();
      } catch (...) {
#pragma omp critical(lowbit_eval_error)
        if (!error) error = std::current_exception();
        failed = true;
      }
    }
    if (error) std::rethrow_exception(error);
  }
  progress.finish();
  if (stats) {
    stats->requests = n_requests;
    stats->tokens_forwarded = forwarded;
    stats->truncated_examples = truncated;
    stats->seconds = timer.seconds();
  }
  return scores;
}

size_t np_argmax(std::span<const double> v) {
  LOWBIT_ASSERT(!v.empty());
  size_t best = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (std::isnan(v[i])) return i;
    if (v[i] > v[best]) best = i;
  }
  return best;
}

double mean_stderr(std::span<const double> v) {
  size_t n = v.size();
  if (n < 2) return NAN;
  double mu = std::accumulate(v.begin(), v.end(), 0.0) / double(n);
  double ss = 0;
  for (double x : v) ss += (x - mu) * (x - mu);
  return std::sqrt(ss / double(n - 1)) / std::sqrt(double(n));
}

ExampleResult multiple_choice_result(const Example& ex, const std::vector<ChoiceScore>& scores) {
  LOWBIT_ASSERT(scores.size() == ex.choice_texts.size() && !scores.empty());
  std::vector<double> lp, norm;
  for (size_t i = 0; i < scores.size(); ++i) {
    lp.push_back(scores[i].logprob);
    // lm-eval v0.3 MultipleChoiceTask: results / len(choice), len in code points, IEEE division (x/0 = -inf).
    norm.push_back(scores[i].logprob / double(utf8_length(ex.choice_texts[i])));
  }
  ExampleResult r;
  r.pred = np_argmax(lp);
  r.pred_norm = np_argmax(norm);
  r.acc = r.pred == size_t(ex.gold);
  r.acc_norm = r.pred_norm == size_t(ex.gold);
  return r;
}

namespace {

double mean(const std::vector<double>& v) {
  return v.empty() ? NAN : std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
}

// NaN (n < 2) is not JSON: write null.
Json num(double x) {
  return std::isfinite(x) ? Json(x) : Json(nullptr);
}

Json acc_entry(const std::vector<double>& acc) {
  return {{"acc", num(mean(acc))}, {"acc_stderr", num(mean_stderr(acc))}, {"n", acc.size()}};
}

std::string slug(const std::string& s) {
  std::string o = s;
  for (char& c : o)
    if (c == ' ') c = '_';
  std::transform(o.begin(), o.end(), o.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return o;
}

}  // namespace

Json run_eval(const LogitSource& src, const Tokenizer& tok, const EvalOptions& opts) {
  if (opts.tasks.empty())
    fail(
        "eval: no tasks given (known: piqa, arc_easy, arc_challenge, hellaswag, "
        "winogrande, mmlu, lambada)");
  std::string data_dir = opts.data_dir.empty() ? find_search_paths().data_dir : opts.data_dir;
  if (data_dir.empty())
    fail("eval: no data dir (give --data-dir, set LOWBIT_DATA, or put shared/data beside the repo)");
  int max_length = std::min(opts.max_length, src.max_length());
  if (max_length < 2) fail("eval: max length {} is too short to score anything", max_length);

  // Load every task first so that a bad file fails before hours of scoring.
  std::vector<TaskData> tasks;
  for (const std::string& name : opts.tasks)
    tasks.push_back(load_task(name, data_dir, opts.limit, opts.num_fewshot, opts.hellaswag_file));

  Json results = Json::object(), versions = Json::object(), files = Json::object(), timing = Json::object(),
       fewshot = Json::object();
  std::string log;
  for (const TaskData& t : tasks) {
    ScoreOptions so;
    so.max_length = max_length;
    so.threads = opts.threads;
    so.quiet = opts.quiet;
    so.label = t.name;
    ScoreStats st;
    auto scores = score_examples(t.examples, tok, src, so, &st);

    std::vector<double> acc, acc_norm;
    double logprob_sum = 0;
    for (size_t i = 0; i < t.examples.size(); ++i) {
      const Example& ex = t.examples[i];
      Json row = {{"task", t.name}, {"doc_id", i}, {"gold", ex.gold}};
      if (t.name == "mmlu") {
        row["subject"] = t.subjects[size_t(ex.group)];
        row["doc_id"] = i;  // index in the concatenation of the subjects (sorted by name)
      }
      Json lps = Json::array(), greedy = Json::array(), ntok = Json::array();
      bool trunc = false;
      for (const ChoiceScore& s : scores[i]) {
        lps.push_back(s.logprob);
        greedy.push_back(s.greedy);
        ntok.push_back(s.n_tokens);
        trunc = trunc || s.truncated;
      }
      if (t.name == "lambada") {
        acc.push_back(scores[i][0].greedy ? 1.0 : 0.0);
        logprob_sum += scores[i][0].logprob;
        row["acc"] = acc.back();
      } else {
        ExampleResult r = multiple_choice_result(ex, scores[i]);
        acc.push_back(r.acc);
        acc_norm.push_back(r.acc_norm);
        row["pred"] = r.pred;
        row["acc"] = r.acc;
        if (t.with_norm) {
          row["pred_norm"] = r.pred_norm;
          row["acc_norm"] = r.acc_norm;
        }
      }
      row["logprobs"] = lps;
      row["greedy"] = greedy;
      row["n_tokens"] = ntok;
      if (trunc) row["truncated"] = true;
      if (!opts.log_path.empty()) log += row.dump() + "\n";
    }

    Json r = acc_entry(acc);
    if (t.with_norm) {
      r["acc_norm"] = num(mean(acc_norm));
      r["acc_norm_stderr"] = num(mean_stderr(acc_norm));
    }
    if (t.name == "lambada")  // lm-eval v0.3 perplexity aggregation: exp(-mean(per-passage log-likelihood))
      r["ppl"] = num(std::exp(-logprob_sum / double(t.examples.size())));
    if (t.name == "mmlu") {
      // Per subject, per category (mean over its subjects, and over its questions), and overall.
      size_t n_sub = t.subjects.size();
      std::vector<std::vector<double>> per_sub(n_sub);
      for (size_t i = 0; i < t.examples.size(); ++i) per_sub[size_t(t.examples[i].group)].push_back(acc[i]);
      std::vector<double> sub_means;
      std::map<std::string, std::pair<std::vector<double>, std::vector<double>>>
          cat;  // subject means, questions
      for (size_t g = 0; g < n_sub; ++g) {
        results["mmlu_" + t.subjects[g]] = acc_entry(per_sub[g]);
        sub_means.push_back(mean(per_sub[g]));
        auto& c = cat[mmlu_category(t.subjects[g])];
        c.first.push_back(sub_means.back());
        c.second.insert(c.second.end(), per_sub[g].begin(), per_sub[g].end());
      }
      for (const std::string& name : mmlu_categories()) {
        auto& c = cat[name];
        results["mmlu_" + slug(name)] = {{"acc", num(mean(c.first))},
                                         {"acc_questions", num(mean(c.second))},
                                         {"n_subjects", c.first.size()},
                                         {"n", c.second.size()}};
      }
      r["acc_subjects"] = num(mean(sub_means));
      r["n_subjects"] = n_sub;
      r["truncated"] = st.truncated_examples;
    } else if (st.truncated_examples) {
      r["truncated"] = st.truncated_examples;
    }
    results[t.name] = r;
    versions[t.name] = t.version;
    fewshot[t.name] = t.num_fewshot;
    Json f = Json::object();
    for (const auto& [rel, abs] : t.files) f[rel] = sha256_file(abs);
    files[t.name] = f;
    timing[t.name] = {{"seconds", st.seconds},
                      {"requests", st.requests},
                      {"requests_per_s", st.seconds > 0 ? st.requests / st.seconds : 0.0},
                      {"tokens_forwarded", st.tokens_forwarded}};
  }
  if (!opts.log_path.empty()) write_file_atomic(opts.log_path, log);

  Json config = {{"model", opts.model_name},
                 {"limit", opts.limit > 0 ? Json(opts.limit) : Json(nullptr)},
                 {"num_fewshot", fewshot},
                 {"max_length", max_length},
                 {"threads", opts.threads > 0 ? opts.threads : num_threads()},
                 {"hellaswag_file", opts.hellaswag_file},
                 {"harness", "lowbit (lm-evaluation-harness v0.3 conventions, issue 4)"}};
  return {{"results", results},
          {"versions", versions},
          {"config", config},
          {"data_files", files},
          {"timing", timing}};
}

}  // namespace lowbit

// Runs a study: every (model, row, column) cell that the result store does not hold yet, in a fixed order.
//
// Order and identity. The plan enumerates units (model × row, in the study's order) and, for each, its
// columns: "quant" for a quantized row, "finetune" for a fine-tune row, "ppl:<dataset>" per perplexity
// dataset, "task:<name>" per zero-shot task, "mmlu" (the tasks: the row's own list, or the study's). A cell's
// key is the sha256 of what determines its numbers — the model files' hash, the row's settings (plus the
// calibration file's sha256, nsamples, seqlen and seed for calibrated methods; a fine-tune row's settings
// hold every fine-tune setting and its data file's sha256), the column and its settings, and the lowbit
// version — so a cell computed by any earlier run, shard or study with the same key is reused, and nothing
// else is. `seq` (unit · 100 + column) orders reports by the plan whatever order cells were stored in.
//
// Resumability. Each cell is stored in one SQLite transaction as soon as it finishes; quantized models are
// cached on disk by key (written to a temporary directory, renamed when complete), and always evaluated from
// that saved checkpoint, so a run killed at any point and restarted recomputes only unfinished cells and
// produces the same numbers as an uninterrupted run. A fine-tune trains in its cache directory, checkpointing
// as it goes (train/finetune.h): a killed study resumes it from the last checkpoint to the same adapter, and
// evaluates base + the saved adapter.
//
// Shards. --shard i/n takes the units whose index u has u % n == i - 1 (a unit's cells stay together, so
// its model is quantized once); shards write to their own stores (or one on a local disk) and
// merge_stores() combines them.
#pragma once
#include <set>
#include <string>
#include <vector>

#include "core/paths.h"
#include "study/spec.h"

namespace lowbit {

class ResultStore;

struct StudyOptions {
  std::string cache_dir;  // quantized checkpoints; empty = "<store>.cache"
  int shard_index = 1, shard_count = 1;
  SearchPaths paths;
  bool quiet = false;
  bool inputs_checked = false;  // check_study_inputs already ran (run_study skips it)
};

struct StudySummary {
  int64_t cells = 0;           // in this shard's part of the plan
  int64_t already_stored = 0;  // found in the store at start
  int64_t computed = 0;
  double seconds = 0;
  std::vector<std::string> plan_keys;  // every cell of the whole study (all shards), in plan order
  int64_t stored_cells = 0;            // of plan_keys, in the store at the end
  double stored_seconds = 0;  // their own times summed: the study's cost over every run that stored them
};

// Validates the inputs first (check_study_inputs, unless opt.inputs_checked), then computes the missing
// cells.
StudySummary run_study(const StudySpec& spec, ResultStore& store, const StudyOptions& opt);

// How many of `keys` the store holds, and those cells' own times summed.
struct StoredTally {
  int64_t cells = 0;
  double seconds = 0;
};
StoredTally stored_tally(const ResultStore& store, const std::vector<std::string>& keys);

// The keys of every cell of the study (all shards), in plan order (the study's rows, then columns), for
// reports limited to one study.
std::vector<std::string> study_keys(const StudySpec& spec, ResultStore& store, const SearchPaths& paths);

// Copies every cell of `from` that `into` lacks; returns the number copied. A key present in both with
// different metrics is reported (the first store wins) and counted in *conflicts.
int64_t merge_stores(ResultStore& into, const ResultStore& from, int64_t* conflicts);

}  // namespace lowbit

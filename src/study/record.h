// One finished cell of a study: a (model, row, column) and its metrics, as the result store holds it and the
// reports read it.
//
//   row    = one quantization setting, e.g.
//   {"method":"gptq","wbits":4,"abits":16,"group":128,"act_order":true}
//            (the unquantized baseline is {"method":"fp16","wbits":16,"abits":16,"group":-1}); keys sorted.
//            A fine-tune row: {"method":"qlora","wbits":4,"abits":16,"group":64,"finetune":{steps, batch, lr,
//            rank, ..., "data_sha256"}} (method lora, qlora or ir-qlora; study/spec.h FinetuneSpec).
//   column = what was measured on that row's model, named by `column`:
//     "quant"            bits_per_weight, output_bytes, n_weights   (quantized rows; seconds = quantization)
//     "finetune"         steps, tokens, first_loss, final_loss, examples, bits_per_weight (the base's: NF4
//                        or 16)   (fine-tune rows; seconds = the training over every run that resumed it,
//                        plus the last run's preparation)
//     "ppl:<dataset>"    ppl, nll_mean, windows, seqlen, n_tokens; when the study measures KL divergence from
//                        the baseline (its first dataset): kld_mean, kld_median, kld_p99, kld_max,
//                        top1_agreement, kld_positions
//     "task:<name>"      acc, acc_stderr, [acc_norm, acc_norm_stderr], n  (piqa, arc_easy, arc_challenge,
//                        hellaswag, winogrande, lambada)
//     "mmlu"             acc (over questions), acc_stderr, acc_subjects (mean over subjects), humanities,
//     stem,
//                        social_sciences, other (each the mean over its subjects), n
//   Accuracies are fractions in [0, 1]; reports print percent. Metrics hold only what the computation
//   determines (no timings), so an interrupted-and-resumed study stores exactly the numbers of an
//   uninterrupted one; timings are in `seconds`, `peak_rss` and provenance.
#pragma once
#include <cstdint>
#include <string>

#include "core/json.h"

namespace lowbit {

struct CellRecord {
  std::string key;         // sha256 hex of (model_hash, row, column, column params, lowbit version)
  std::string model;       // display name (the model argument as given, e.g. "testbed-25m")
  std::string model_hash;  // sha256 hex over the checkpoint's files
  Json model_info;         // {"n_layer", "n_embd", "n_vocab", "n_head", "n_kv_head", "n_ff", "n_params"}
  Json row;                // the row's settings (see above)
  std::string column;      // "quant", "ppl:wikitext2", "task:piqa", "mmlu", ...
  Json params;             // the column's settings: seqlen, max_windows, limit, kld, num_fewshot ...
  Json metrics;            // see above; missing metrics are absent, never null
  Json provenance;         // data files + sha256, calibration file + sha256, seed, threads, git revision
  double seconds = 0;      // wall time of this cell
  uint64_t peak_rss = 0;   // process peak RSS after the cell, bytes
  std::string lowbit_version;
  std::string created_at;  // ISO 8601 UTC
  int64_t seq = 0;  // position in the study's plan (unit · 100 + column); reports order rows by the smallest
};

}  // namespace lowbit

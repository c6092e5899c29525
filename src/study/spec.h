// A study definition (TOML): which models, which quantization rows, which columns (perplexity datasets,
// tasks), and the calibration and evaluation settings. Parsed and fully validated before any work starts, so
// a typo fails in a second, not after an hour of quantization.
//
//   name = "quick"
//   models = ["testbed-25m"]
//   [calibration]   file = "calib/testbed-calib.txt", nsamples = 128, seqlen = 2048, seed = 0
//   [perplexity]    datasets = ["wikitext2", "c4-sample", "ptb"], seqlen = 2048, max_windows = 0, kld = true
//   [tasks]         names = ["piqa", ..., "mmlu"], limit = 0, mmlu_limit = -1 (= limit), num_fewshot = -1
//   [[rows]]        method = "fp16"
//   [[rows]]        method = ["rtn", "gptq"], wbits = [4, 3], group = [128, -1], abits = 16
//   [[rows]]        method = "gptq", wbits = 4, group = 128, act_order = true
//
// Each [[rows]] table expands to the Cartesian product of its list-valued keys (method × wbits × abits ×
// group), in that nesting order; other keys are the options of the registered methods (quant/method.h: sym,
// act_order, static_groups, true_sequential, mse, damp, awq_seqlen, ...). abits < 16 quantizes every block
// linear's input per token at that many bits through the activation hook (quant/quantize.h
// set_activation_bits), on top of the row's weight method. The unquantized baseline is method "fp16" (the
// checkpoint's own weights, whatever their storage dtype). kld = true measures KL divergence of each
// quantized row from the baseline on the first perplexity dataset.
//
// Fine-tune rows (the study's LoRA-FT table, Huang et al. 2024 Table 2): method "lora", "qlora" or
// "ir-qlora" (train/qlora.h), with the [finetune] section's settings (data, format, seq_len, steps, batch,
// micro_batch, lr, schedule, warmup_ratio, max_grad_norm, weight_decay, seed, rank, alpha, dropout, ...),
// which the row may override key by key. qlora and ir-qlora imply wbits = 4 (NF4, blocks of 64), lora 16.
//
// Any row may list its own `tasks` (replacing [tasks] names for that row), so that MMLU, the costly column,
// runs on the LoRA-FT table's rows only.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/paths.h"
#include "quant/quantize.h"
#include "train/data.h"
#include "train/finetune.h"
#include "train/lora.h"

namespace lowbit {

// What a fine-tune row trains: the base prepared by `method`, LoRA adapters on every block linear.
struct FinetuneSpec {
  std::string method;                            // "lora", "qlora", "ir-qlora"
  std::string data = "calib/testbed-calib.txt";  // data-dir relative path, or a path
  std::string format = "text";                   // "text" (windows of seq_len tokens) or "alpaca"
  int seq_len = 512;
  AlpacaOptions alpaca;  // source_max_len, target_max_len, train_on_source
  FinetuneOptions opt;   // steps, batch, micro_batch, lr, schedule, ...; quiet is the study's
  LoraConfig lora;  // rank, alpha, dropout; iec follows the method and seed is opt.seed (as lowbit finetune)
  std::string data_key = "finetune.data";  // where `data` was given ("rows[3].data"), for messages
  // Every setting that decides the adapter, as the row's "finetune" settings (sorted keys; the data by path
  // here, by content in the cell keys). save_every is left out: a resume yields the same adapter wherever the
  // last checkpoint was.
  Json settings() const;
  LoraConfig lora_config() const;  // lora with iec and seed filled in
};

struct StudyRow {
  Json settings;      // canonical, sorted keys: method, wbits, abits, group, the options given, [finetune]
  QuantConfig quant;  // for quantized rows; the calibration comes from the study. quant.method names the row
  // 16: float activations; 2..8: every block linear's input quantized per token (set_activation_bits)
  int abits = 16;
  std::optional<FinetuneSpec> finetune;           // fine-tune rows
  std::optional<std::vector<std::string>> tasks;  // the row's own task list (replaces [tasks] names)
  std::string where;                              // "rows[2]" for messages
  bool baseline() const { return quant.method == "fp16"; }
  bool is_finetune() const { return finetune.has_value(); }
  std::string label() const;  // "gptq w4 a16 g128 act_order", "qlora w4 steps=200"
};

struct StudySpec {
  std::string name;
  std::string source;  // the file, or "preset <name>"
  std::vector<std::string> models;
  std::string calib_file = "calib/testbed-calib.txt";
  int calib_nsamples = 128, calib_seqlen = 2048;
  uint64_t calib_seed = 0;
  std::vector<std::string> ppl_datasets;
  int ppl_seqlen = 2048, ppl_max_windows = 0;
  bool kld = true;
  std::vector<std::string> tasks;
  int task_limit = 0, num_fewshot = -1;
  int mmlu_limit = -1;  // questions per MMLU subject; -1 = task_limit
  std::vector<StudyRow> rows;
  // The task names of a row: its own list, or the study's.
  const std::vector<std::string>& row_tasks(const StudyRow& r) const { return r.tasks ? *r.tasks : tasks; }
};

// Parses and checks the study's own consistency: every key known (an unknown one is named, with the closest
// known key), types, methods, bits, datasets and task names. Throws a one-line Error "<source>: <key>: ...".
StudySpec parse_study(const std::string& toml_text, const std::string& source);

// A preset name (study_presets()) or a TOML file path.
StudySpec load_study(const std::string& name_or_path);
const std::vector<std::string>& study_presets();  // "quick", "paper"
const std::string& preset_text(const std::string& name);

// The checks that need the files: each model loads and each row's group divides its widths (a fine-tune row's
// NF4 blocks and, for IEC, its rank), calibration, fine-tune data and dataset files exist. Throws a one-line
// Error naming the key.
void check_study_inputs(const StudySpec& spec, const SearchPaths& paths);

}  // namespace lowbit

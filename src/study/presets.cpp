// The built-in studies. `lowbit study --print-preset NAME` prints one, to copy and edit.
#include <map>

#include "core/error.h"
#include "study/spec.h"

namespace lowbit {

namespace {

// Minutes on 2 cores for testbed-25m: a few rows, perplexity on the first windows only, tasks on their first
// examples. The numbers are for smoke-testing a set-up and seeing the report, not for conclusions.
const char* kQuick =
    R"(# lowbit study preset "quick": a handful of rows on short evaluations (minutes on 2 cores), and a token
# QLoRA fine-tune.
name = "quick"
models = ["testbed-25m"]

[calibration]
file = "calib/testbed-calib.txt"
nsamples = 16
seqlen = 2048
seed = 0

[perplexity]
datasets = ["wikitext2", "c4-sample", "ptb"]
seqlen = 2048
max_windows = 2      # the first 2 windows (4096 tokens) of each text
kld = true           # KL divergence from the fp16 row on wikitext2

[tasks]
names = ["piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande"]
limit = 20           # the first 20 examples of each task
mmlu_limit = 1       # MMLU (on the rows that list it): the first question of each of the 57 subjects, 5-shot

# A token QLoRA fine-tune, to see the LoRA fine-tuning table: 10 steps of 4 windows of 256 tokens of plain text
# (the study fine-tunes on Alpaca, which shared/data does not have; the report says so).
[finetune]
data = "calib/testbed-calib.txt"
format = "text"
seq_len = 256
steps = 10
batch = 4
micro_batch = 2

[[rows]]
method = "fp16"
tasks = ["piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "mmlu"]

[[rows]]
method = "rtn"
wbits = [4, 3, 2]
group = 128

[[rows]]
method = "gptq"
wbits = [4, 3]
group = 128

[[rows]]
method = "awq"
wbits = 4
group = 128

[[rows]]
method = "qlora"
tasks = ["piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "mmlu"]
)";

// The LLaMA3 low-bit study's Table 1 rows that lowbit implements (Huang et al. 2024, Table 1: RTN, GPTQ
// and AWQ at 4/3/2 bits with group 128 and 8/4/3/2 bits per channel, DB-LLM at W2 g128), full evaluations;
// then the rows of its LoRA-FT table (Table 2: NormalFloat, QLoRA, IR-QLoRA, beside FP16) with MMLU, which
// only those rows and FP16 measure (a row's `tasks`). The Table 2 rows come last and FP16 gains its MMLU cell
// through its own task list, so the keys of the Table 1 cells stay as they were and
// results/testbed-25m-paper.sqlite keeps them (a test checks this). One [[rows]] block per method and group.
// Method lists (method = ["rtn", "gptq", "awq"]) would give the same 21 quantized rows from one block for
// group 128 and one per channel, but a block expands method first (study/spec.cpp), so the rows would come in
// group order: every g128 row, then every per-channel one. The report lays rows out in plan order, and the
// paper's Table 1 (shared/paper/llama3-8b-ptq.csv, results/testbed-25m-paper-report) goes by method, each
// method's g128 rows then its per-channel ones; no list structure gives that order. Plan order also decides
// which rows each
// --shard runs (plan position mod n).
const char* kPaper =
    R"(# lowbit study preset "paper": the study's RTN/GPTQ/AWQ/DB-LLM/QuIP/PB-LLM/BiLLM/SliM-LLM rows and its LoRA-FT rows, full evaluations.
name = "paper"
models = ["testbed-25m"]

[calibration]
file = "calib/testbed-calib.txt"
nsamples = 128
seqlen = 2048
seed = 0

[perplexity]
datasets = ["wikitext2", "c4-sample", "ptb"]
seqlen = 2048
max_windows = 0
kld = true

[tasks]
names = ["piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande"]
limit = 0

# The QLoRA / IR-QLoRA rows' fine-tune, QLoRA's recipe (qlora.py: batch 16, lr 2e-4 constant, warmup 0.03,
# clipping 0.3, LoRA r 64, alpha 16 on every linear). The study fine-tunes on Alpaca, which shared/data does not
# have: these rows train on the calibration text in 512-token windows instead (the report says so). 70 steps
# (0.8 epoch of that text) take about 15 minutes per row on 2 idle cores for testbed-25m (docs/study.md).
[finetune]
data = "calib/testbed-calib.txt"
format = "text"
seq_len = 512
steps = 70
batch = 16
micro_batch = 4
lr = 2e-4
warmup_ratio = 0.03
max_grad_norm = 0.3
rank = 64
alpha = 16
dropout = 0.0
seed = 42
save_every = 10      # a study killed mid-fine-tune loses at most 10 steps

[[rows]]
method = "fp16"
tasks = ["piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "mmlu"]

[[rows]]
method = "rtn"
wbits = [4, 3, 2]
group = 128

[[rows]]
method = "rtn"
wbits = [8, 4, 3, 2]
group = -1

[[rows]]
method = "gptq"
wbits = [4, 3, 2]
group = 128

[[rows]]
method = "gptq"
wbits = [8, 4, 3, 2]
group = -1

[[rows]]
method = "awq"
wbits = [4, 3, 2]
group = 128

[[rows]]
method = "awq"
wbits = [8, 4, 3, 2]
group = -1

# Table 1's DB-LLM row (W2 g128): trained, not post-training. Quantization-aware distillation from the fp16
# model (docs/db-llm.md): 400 steps of 8 windows of 256 tokens of the calibration text, about 25 minutes on 2
# idle cores for testbed-25m.
[[rows]]
method = "db-llm"
wbits = 2
group = 128

# Table 2: NormalFloat (NF4 without fine-tuning), QLoRA and IR-QLoRA, each with MMLU (14042 questions, 5-shot).
[[rows]]
method = "nf4"
wbits = 4
tasks = ["piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "mmlu"]

[[rows]]
method = ["qlora", "ir-qlora"]
tasks = ["piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "mmlu"]

# Table 1's QuIP rows (per channel: Kronecker rotations, LDLQ, one greedy pass, as the authors' --incoh_processing
# with --quant ldlq), and the randomized-Hadamard rotation (QuIP#'s) at 2 bits as an extra row. After the Table 2
# rows, so that the cells above keep their keys.
[[rows]]
method = "quip"
wbits = [4, 3, 2]

[[rows]]
method = "quip"
wbits = 2
rotation = "hadamard"

# Table 1's PB-LLM rows (group 128, salient weights at 8 bits, Hessian salience, as the authors' run.py with
# --groupsize 128): the paper's "1.7 bit" is 90% binarized, its "2 bit" 6/7 binarized ((1 - r) + 8r = 2).
[[rows]]
method = "pbllm"
wbits = 1
group = 128
low_frac = 0.9

[[rows]]
method = "pbllm"
wbits = 1
group = 128
low_frac = 0.857142857142857

# Table 1's BiLLM row (block = group 128, Hessian salience, as the authors' run.py `braq --blocksize 128
# --salient_metric hessian`): its "1.1 bit" is 1 + the fraction of salient columns.
[[rows]]
method = "billm"
wbits = 1
group = 128

# SliM-LLM's rows (the study's later versions; the authors' scripts/llama-3.sh: run.py ... {3bit|2bit}
# --groupsize 128): per-group mixed precision averaging 3 and 2 bits, allocation searched per linear.
[[rows]]
method = "slim"
wbits = [3, 2]
group = 128
)";

const std::map<std::string, std::string>& presets() {
  static const std::map<std::string, std::string> p{{"quick", kQuick}, {"paper", kPaper}};
  return p;
}

}  // namespace

const std::vector<std::string>& study_presets() {
  static const std::vector<std::string> names{"quick", "paper"};
  return names;
}

const std::string& preset_text(const std::string& name) {
  auto it = presets().find(name);
  if (it == presets().end()) fail("unknown study preset '{}' (presets: quick, paper)", name);
  return it->second;
}

}  // namespace lowbit

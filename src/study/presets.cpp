// The built-in studies. `lowbit study --print-preset NAME` prints one, to copy and edit.
#include <map>

#include "core/error.h"
#include "study/spec.h"

namespace lowbit {

namespace {

// Minutes on 2 cores for testbed-25m: a few rows, perplexity on the first windows only, tasks on their first
// examples. The numbers are for smoke-testing a set-up and seeing the report, not for conclusions.
const char* kQuick =
    R"(# lowbit study preset "quick": a handful of rows on short evaluations (minutes on 2 cores).
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

[[rows]]
method = "fp16"

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
)";

// The LLaMA3 low-bit study's post-training rows that lowbit implements (Huang et al. 2024, Table 1: RTN, GPTQ
// and AWQ at 4/3/2 bits with group 128 and 8/4/3/2 bits per channel), full evaluations.
// One [[rows]] block per method and group. Method lists (method = ["rtn", "gptq", "awq"]) would give the same
// 21 quantized rows from one block for group 128 and one per channel, but a block expands method first
// (study/spec.cpp), so the rows would come in group order: every g128 row, then every per-channel one. The
// report lays rows out in plan order, and the paper's Table 1 (shared/paper/llama3-8b-ptq.csv,
// results/testbed-25m-paper-report) goes by method, each method's g128 rows then its per-channel ones; no
// list structure gives that order. Plan order also decides which rows each --shard runs (plan position mod
// n).
const char* kPaper = R"(# lowbit study preset "paper": the study's RTN/GPTQ/AWQ rows, full evaluations.
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

[[rows]]
method = "fp16"

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

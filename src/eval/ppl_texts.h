// The perplexity evaluation texts, built exactly as the GPTQ-style scripts build them from HF datasets
// (see refs/testbed-25m.json "protocol"), so token counts match the published protocol.
#pragma once
#include <string>
#include <vector>

#include "core/paths.h"

namespace lowbit {

struct EvalText {
  std::string name;                // "wikitext2", "ptb", "ptb-new", "c4-sample", or the file path
  std::string text;                // the whole text, tokenized as one sequence
  std::vector<std::string> files;  // data files it was built from
  std::string note;                // caveat to print beside results (empty when none)
};

// The names build_eval_text knows.
const std::vector<std::string>& eval_text_names();

// `name_or_path`: one of eval_text_names(), "text:<path>", or an existing file path (its raw content).
// Throws Error naming the file (and line) for a missing or malformed data file, or listing the valid names.
EvalText build_eval_text(const std::string& name_or_path, const SearchPaths& paths);

}  // namespace lowbit

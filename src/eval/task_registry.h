// The tasks `lowbit eval` knows, their data files under the data dir, and their examples.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "eval/task_prompts.h"

namespace lowbit {

struct TaskData {
  std::string name;
  std::vector<Example> examples;
  std::vector<std::pair<std::string, std::string>> files;  // (path relative to the data dir, absolute path)
  int num_fewshot = 0;
  int version = 0;         // bumped whenever lowbit changes how the task's requests are built
  bool with_norm = false;  // report acc_norm (the lm-eval MultipleChoiceTask tasks)
  // MMLU only: subject name per group (Example::group indexes it).
  std::vector<std::string> subjects;
};

const std::vector<std::string>&
known_tasks();  // piqa, arc_easy, arc_challenge, hellaswag, winogrande, mmlu, lambada

// Reads the task's files from data_dir. limit > 0 keeps the first `limit` examples (per subject for MMLU, as
// lm-eval's --limit does for its 57 hendrycksTest tasks). num_fewshot < 0 means the task's default (5 for
// MMLU, 0 for the rest); only MMLU accepts shots. hellaswag_file is relative to data_dir (*.txt or *.jsonl).
TaskData load_task(const std::string& name, const std::string& data_dir, int limit, int num_fewshot,
                   const std::string& hellaswag_file = "hellaswag/hellaswag_val_full.txt");

}  // namespace lowbit

#include "eval/task_registry.h"

#include "core/error.h"
#include "core/paths.h"

namespace lowbit {

const std::vector<std::string>& known_tasks() {
  static const std::vector<std::string> t = {"piqa",       "arc_easy", "arc_challenge", "hellaswag",
                                             "winogrande", "mmlu",     "lambada"};
  return t;
}

TaskData load_task(const std::string& name, const std::string& data_dir, int limit, int num_fewshot,
                   const std::string& hellaswag_file) {
  TaskData t;
  t.name = name;
  auto file = [&](const std::string& rel) {
    std::string abs = data_dir + "/" + rel;
    if (!path_exists(abs)) fail("{}: data file for task {} not found (data dir '{}')", abs, name, data_dir);
    t.files.emplace_back(rel, abs);
    return abs;
  };
  if (num_fewshot > 0 && name != "mmlu")
    fail("task {}: few-shot prompts are not supported (only mmlu takes --num-fewshot)", name);
  if (name == "piqa") {
    std::string rows = file("piqa/valid.jsonl"), labels = file("piqa/valid-labels.lst");  // (in this order)
    t.examples = piqa_examples(read_piqa(rows, labels));
    t.with_norm = true;
  } else if (name == "arc_easy") {
    t.examples = arc_examples(read_arc(file("arc/ARC-Easy-Test.jsonl")));
    t.with_norm = true;
  } else if (name == "arc_challenge") {
    t.examples = arc_examples(read_arc(file("arc/ARC-Challenge-Test.jsonl")));
    t.with_norm = true;
  } else if (name == "hellaswag") {
    t.examples = hellaswag_examples(read_hellaswag(file(hellaswag_file)));
    t.with_norm = true;
  } else if (name == "winogrande") {
    // dev.jsonl carries the answers; the labels file is read too and must agree.
    std::string rows = file("winogrande/dev.jsonl"), labels = file("winogrande/dev-labels.lst");
    t.examples = winogrande_examples(read_winogrande(rows, labels));
  } else if (name == "lambada") {
    t.examples = lambada_examples(read_lambada(file("lambada/lambada_test_plain_text.txt")));
  } else if (name == "mmlu") {
    t.num_fewshot = num_fewshot < 0 ? 5 : num_fewshot;
    std::string dir = file("mmlu");
    t.files.clear();
    auto subjects = read_mmlu(dir);
    for (size_t g = 0; g < subjects.size(); ++g) {
      MmluSubject& s = subjects[g];
      mmlu_category(s.name);  // throws for a subject outside the 57
      t.files.emplace_back("mmlu/dev/" + s.name + "_dev.csv", dir + "/dev/" + s.name + "_dev.csv");
      t.files.emplace_back("mmlu/test/" + s.name + "_test.csv", dir + "/test/" + s.name + "_test.csv");
      if (limit > 0 && s.test.size() > size_t(limit)) s.test.resize(size_t(limit));
      auto ex = mmlu_examples(s, t.num_fewshot, int(g));
      t.examples.insert(t.examples.end(), ex.begin(), ex.end());
      t.subjects.push_back(s.name);
    }
    return t;
  } else {
    std::string all;
    for (const auto& k : known_tasks()) all += (all.empty() ? "" : ", ") + k;
    fail("unknown task '{}' (known: {})", name, all);
  }
  if (limit > 0 && t.examples.size() > size_t(limit)) t.examples.resize(size_t(limit));
  return t;
}

}  // namespace lowbit

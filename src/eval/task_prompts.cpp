#include "eval/task_prompts.h"

#include <map>

#include "core/error.h"
#include "eval/task_text.h"

namespace lowbit {

namespace {

Example shared_context(std::string context, const std::vector<std::string>& choices, int gold) {
  Example e;
  for (const std::string& c : choices) {
    e.contexts.push_back(context);
    e.continuations.push_back(" " + c);
    e.choice_texts.push_back(c);
  }
  e.gold = gold;
  return e;
}

}  // namespace

std::vector<Example> piqa_examples(const std::vector<PiqaItem>& items) {
  std::vector<Example> out;
  for (const PiqaItem& it : items)
    out.push_back(shared_context("Question: " + it.goal + "\nAnswer:", {it.sol1, it.sol2}, it.label));
  return out;
}

std::vector<Example> arc_examples(const std::vector<ArcItem>& items) {
  std::vector<Example> out;
  for (const ArcItem& it : items)
    out.push_back(shared_context("Question: " + it.stem + "\nAnswer:", it.choices, it.gold));
  return out;
}

std::vector<Example> hellaswag_examples(const std::vector<HellaswagItem>& items) {
  std::vector<Example> out;
  for (const HellaswagItem& it : items) {
    std::vector<std::string> endings;
    for (const std::string& e : it.endings) endings.push_back(hellaswag_preprocess(e));
    out.push_back(shared_context(hellaswag_preprocess(it.query), endings, it.gold));
  }
  return out;
}

std::vector<Example> winogrande_examples(const std::vector<WinograndeItem>& items) {
  std::vector<Example> out;
  for (const WinograndeItem& it : items) {
    size_t blank = it.sentence.find('_');
    LOWBIT_ASSERT(blank != std::string::npos);  // the reader checks this
    std::string target = " ";  // (built in two steps: GCC 12 warns falsely on " " + std::string)
    target += py_strip(std::string_view(it.sentence).substr(blank + 1));
    Example e;
    for (const std::string* opt : {&it.option1, &it.option2}) {
      e.contexts.push_back(it.sentence.substr(0, blank) + *opt);
      e.continuations.push_back(target);
      e.choice_texts.push_back(target.substr(1));
    }
    e.gold = it.answer - 1;
    out.push_back(std::move(e));
  }
  return out;
}

std::string mmlu_subject_title(const std::string& subject) {
  std::string s = subject;
  for (char& c : s)
    if (c == '_') c = ' ';
  return s;
}

static std::string mmlu_question(const MmluItem& it) {
  std::string q = py_strip(it.question);
  const char* letters[] = {"A", "B", "C", "D"};
  for (size_t k = 0; k < 4; ++k) q += std::string("\n") + letters[k] + ". " + it.choices[k];
  return q + "\nAnswer:";
}

std::string mmlu_prefix(const MmluSubject& s, int k) {
  if (k < 0 || size_t(k) > s.dev.size())
    fail("mmlu {}: {} shots requested, the dev split has {} rows", s.name, k, s.dev.size());
  std::string p = "The following are multiple choice questions (with answers) about " +
                  mmlu_subject_title(s.name) + ".\n\n";
  for (int i = 0; i < k; ++i) {
    const MmluItem& d = s.dev[size_t(i)];
    p += mmlu_question(d) + " " + char('A' + d.answer) + "\n\n";
  }
  return p;
}

std::vector<Example> mmlu_examples(const MmluSubject& s, int k, int group) {
  std::string prefix = mmlu_prefix(s, k);
  std::vector<Example> out;
  for (const MmluItem& it : s.test) {
    Example e = shared_context(prefix + mmlu_question(it), {"A", "B", "C", "D"}, it.answer);
    e.group = group;
    out.push_back(std::move(e));
  }
  return out;
}

const std::vector<std::string>& mmlu_categories() {
  static const std::vector<std::string> c = {"STEM", "humanities", "social sciences", "other"};
  return c;
}

const std::string& mmlu_category(const std::string& subject) {
  // Hendrycks et al.'s categories.py: each subject has a subcategory, and the subcategories form four groups
  // (STEM: physics, chemistry, biology, computer science, math, engineering; humanities: history, philosophy,
  // law; social sciences: politics, culture, economics, geography, psychology; other: other, business,
  // health).
  static const std::map<std::string, int> m = {
      {"abstract_algebra", 0},
      {"anatomy", 3},
      {"astronomy", 0},
      {"business_ethics", 3},
      {"clinical_knowledge", 3},
      {"college_biology", 0},
      {"college_chemistry", 0},
      {"college_computer_science", 0},
      {"college_mathematics", 0},
      {"college_medicine", 3},
      {"college_physics", 0},
      {"computer_security", 0},
      {"conceptual_physics", 0},
      {"econometrics", 2},
      {"electrical_engineering", 0},
      {"elementary_mathematics", 0},
      {"formal_logic", 1},
      {"global_facts", 3},
      {"high_school_biology", 0},
      {"high_school_chemistry", 0},
      {"high_school_computer_science", 0},
      {"high_school_european_history", 1},
      {"high_school_geography", 2},
      {"high_school_government_and_politics", 2},
      {"high_school_macroeconomics", 2},
      {"high_school_mathematics", 0},
      {"high_school_microeconomics", 2},
      {"high_school_physics", 0},
      {"high_school_psychology", 2},
      {"high_school_statistics", 0},
      {"high_school_us_history", 1},
      {"high_school_world_history", 1},
      {"human_aging", 3},
      {"human_sexuality", 2},
      {"international_law", 1},
      {"jurisprudence", 1},
      {"logical_fallacies", 1},
      {"machine_learning", 0},
      {"management", 3},
      {"marketing", 3},
      {"medical_genetics", 3},
      {"miscellaneous", 3},
      {"moral_disputes", 1},
      {"moral_scenarios", 1},
      {"nutrition", 3},
      {"philosophy", 1},
      {"prehistory", 1},
      {"professional_accounting", 3},
      {"professional_law", 1},
      {"professional_medicine", 3},
      {"professional_psychology", 2},
      {"public_relations", 2},
      {"security_studies", 2},
      {"sociology", 2},
      {"us_foreign_policy", 2},
      {"virology", 3},
      {"world_religions", 1},
  };
  auto it = m.find(subject);
  if (it == m.end()) fail("mmlu: unknown subject '{}' (not one of the 57 of Hendrycks et al.)", subject);
  return mmlu_categories()[size_t(it->second)];
}

std::vector<Example> lambada_examples(const std::vector<std::string>& passages) {
  std::vector<Example> out;
  for (const std::string& p : passages) {
    size_t sp = p.rfind(' ');
    LOWBIT_ASSERT(sp != std::string::npos);  // the reader checks this
    Example e;
    e.contexts.push_back(p.substr(0, sp));
    e.continuations.push_back(p.substr(sp));
    e.choice_texts.push_back(p.substr(sp + 1));
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace lowbit

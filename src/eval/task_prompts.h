// Request construction per task, following lm-evaluation-harness v0.3 (the harness the study's fork is based
// on) and issue 4's conventions. An Example is one question: for each choice a context and a continuation
// whose log-likelihood is scored (harness.h says how the token split is made), the gold choice, and the
// choice text whose length in Unicode code points normalises acc_norm.
#pragma once
#include <string>
#include <vector>

#include "eval/task_readers.h"

namespace lowbit {

struct Example {
  std::vector<std::string> contexts;       // one per choice; equal for every task but WinoGrande
  std::vector<std::string> continuations;  // one per choice, each with its leading space
  std::vector<std::string> choice_texts;   // acc_norm divides by utf8_length(choice_text) (no leading space)
  int gold = 0;
  int group = 0;  // examples of one group may share a prompt prefix (the MMLU subject); scheduling hint only
};

// PIQA: "Question: {goal}\nAnswer:" + " {sol}".
std::vector<Example> piqa_examples(const std::vector<PiqaItem>& items);

// ARC-Easy / ARC-Challenge: "Question: {stem}\nAnswer:" + " {choice}" in the given order.
std::vector<Example> arc_examples(const std::vector<ArcItem>& items);

// HellaSwag: preprocess(query) + " " + preprocess(ending); acc_norm over the preprocessed ending. The text
// form's query has ctx_b not capitalised (task_readers.h), so prompts built from it differ from lm-eval's on
// the original jsonl by that one capital letter (e.g. "...on a roof. he" where lm-eval has "...on a roof.
// He").
std::vector<Example> hellaswag_examples(const std::vector<HellaswagItem>& items);

// WinoGrande, partial scoring (Trinh & Le 2018; lm-eval v0.3): context = sentence[:i] + option where i is the
// first "_", continuation = " " + strip(sentence[i+1:]), the same for both options.
std::vector<Example> winogrande_examples(const std::vector<WinograndeItem>& items);

// MMLU, the prompt of Hendrycks et al. 2021 with k shots from the first k dev rows:
//   "The following are multiple choice questions (with answers) about {subject}.\n\n"
//   + k x "{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer: {X}\n\n" + "{q}\nA. ...\nD. {d}\nAnswer:"
// {q} is py_strip()ped, choices are as stored; continuations " A".." D". {subject} is the file stem with "_"
// -> " ".
std::string mmlu_subject_title(const std::string& subject);  // "abstract_algebra" -> "abstract algebra"
std::string mmlu_prefix(const MmluSubject& s, int k);        // header + k shots
std::vector<Example> mmlu_examples(const MmluSubject& s, int k, int group);

// The four category groups of the MMLU paper (Hendrycks et al. 2021, categories.py): "STEM", "humanities",
// "social sciences", "other". Throws for a subject outside the 57.
const std::string& mmlu_category(const std::string& subject);
const std::vector<std::string>& mmlu_categories();  // the four, in that order

// LAMBADA (lm-eval v0.3 lambada_standard): context = text up to the last space, continuation = " " + last
// word. A single choice; gold 0; scored for the log-probability and whether every target token is the greedy
// one.
std::vector<Example> lambada_examples(const std::vector<std::string>& passages);

}  // namespace lowbit

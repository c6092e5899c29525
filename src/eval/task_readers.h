// Readers for the task data files in ../shared/data (see its README). Every malformed row throws
// lowbit::Error
// "<file>:<line>: <what is wrong>". Strings are kept exactly as stored; prompt building (task_prompts.h)
// applies the lm-eval conventions.
#pragma once
#include <array>
#include <string>
#include <vector>

namespace lowbit {

// PIQA validation: valid.jsonl {"goal", "sol1", "sol2"} + valid-labels.lst (one 0/1 per row).
struct PiqaItem {
  std::string goal, sol1, sol2;
  int label = 0;
};
std::vector<PiqaItem> read_piqa(const std::string& jsonl_path, const std::string& labels_path);

// AI2 ARC *.jsonl: {"id", "question": {"stem", "choices": [{"text", "label"}]}, "answerKey"}. Labels are
// "A", "B", ... or "1", "2", ... in order (checked); gold is the answer's position, as lm-eval's
// ["A".."E"].index(num_to_letter(answerKey)).
struct ArcItem {
  std::string id, stem;
  std::vector<std::string> choices;
  int gold = 0;
};
std::vector<ArcItem> read_arc(const std::string& path);

// HellaSwag. `query` is the raw context before lm-eval's preprocess:
//  - llama.cpp's 6-line text form (*.txt): the context line as stored. That line is activity_label + ": " +
//  ctx_a
//    + " " + ctx_b with ctx_b NOT capitalised, and the split between ctx_a and ctx_b is lost, so lm-eval's
//    ctx_b.capitalize() cannot be reproduced exactly: the line is used as it is (see task_prompts.h).
//  - the original jsonl (*.jsonl): activity_label + ": " + ctx_a + " " + ctx_b.capitalize(), as lm-eval v0.3.
struct HellaswagItem {
  std::string query;
  std::array<std::string, 4> endings;
  int gold = 0;
};
std::vector<HellaswagItem> read_hellaswag(const std::string& path);

// WinoGrande 1.1 dev.jsonl {"sentence" with one "_", "option1", "option2", "answer": "1"|"2"}. When a row has
// no answer, labels_path (dev-labels.lst, one 1/2 per row) supplies it; when both exist they must agree.
struct WinograndeItem {
  std::string sentence, option1, option2;
  int answer = 1;  // 1 or 2
};
std::vector<WinograndeItem> read_winogrande(const std::string& jsonl_path,
                                            const std::string& labels_path = "");

// MMLU (hendrycks) CSV: RFC 4180, no header, rows of question, A, B, C, D, answer letter.
struct MmluItem {
  std::string question;
  std::array<std::string, 4> choices;
  int answer = 0;  // 0..3 for A..D
};
std::vector<MmluItem> read_mmlu_csv(const std::string& path);

struct MmluSubject {
  std::string name;  // file stem without the split suffix: "abstract_algebra"
  std::vector<MmluItem> dev, test;
};
// dir holds dev/<subject>_dev.csv and test/<subject>_test.csv; subjects sorted by name, each in both splits.
std::vector<MmluSubject> read_mmlu(const std::string& dir);

// LAMBADA plain text: one passage per non-empty line; the target is the last space-separated word.
std::vector<std::string> read_lambada(const std::string& path);

// Parses RFC 4180 CSV text: ',' separators, records end at "\n" or "\r\n", quoted fields may hold commas,
// newlines and doubled quotes. Blank lines are skipped (as pandas does). Each record comes with the 1-based
// line it starts on. `path` only names the file in errors.
struct CsvRecord {
  std::vector<std::string> fields;
  size_t line = 0;
};
std::vector<CsvRecord> parse_csv(std::string_view text, const std::string& path);

}  // namespace lowbit

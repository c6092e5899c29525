#include "eval/task_readers.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/json.h"
#include "core/mmap.h"
#include "eval/task_text.h"

namespace fs = std::filesystem;

namespace lowbit {

namespace {

struct Line {
  std::string_view text;
  size_t number;  // 1-based
};

// Splits at '\n' (a trailing '\r' is dropped); the empty piece after a final newline is not a line.
std::vector<Line> split_lines(std::string_view text) {
  std::vector<Line> lines;
  size_t pos = 0, number = 1;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view l = text.substr(pos, end - pos);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    lines.push_back({l, number++});
    pos = end + 1;
  }
  return lines;
}

std::string read_text(const std::string& path) {
  std::string text = read_file(path);
  if (!valid_utf8(text)) {
    // Name the first bad line so the user can find it.
    for (const Line& l : split_lines(text))
      if (!valid_utf8(l.text)) fail("{}:{}: invalid UTF-8", path, l.number);
    fail("{}: invalid UTF-8", path);
  }
  return text;
}

std::string where(const std::string& path, size_t line) {
  return path + ":" + std::to_string(line);
}

// One JSON object per non-empty line.
std::vector<std::pair<Json, size_t>> read_jsonl(const std::string& path) {
  std::string text = read_file(path);
  std::vector<std::pair<Json, size_t>> rows;
  for (const Line& l : split_lines(text)) {
    if (l.text.find_first_not_of(" \t") == std::string_view::npos) continue;
    Json j = parse_json_text(l.text, where(path, l.number));
    if (!j.is_object()) fail("{}:{}: expected a JSON object", path, l.number);
    rows.emplace_back(std::move(j), l.number);
  }
  return rows;
}

const Json& field(const Json& j, const char* key, const std::string& path, size_t line) {
  auto it = j.find(key);
  if (it == j.end()) fail("{}:{}: missing field '{}'", path, line, key);
  return *it;
}

std::string str_field(const Json& j, const char* key, const std::string& path, size_t line) {
  const Json& v = field(j, key, path, line);
  if (!v.is_string()) fail("{}:{}: field '{}' is not a string", path, line, key);
  return v.get<std::string>();
}

// Non-empty lines of a labels file, each one of `allowed`.
std::vector<std::pair<int, size_t>> read_labels(const std::string& path, std::string_view allowed) {
  std::string text = read_file(path);
  std::vector<std::pair<int, size_t>> labels;
  for (const Line& l : split_lines(text)) {
    std::string_view t = l.text;
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    if (t.empty()) continue;
    if (t.size() != 1 || allowed.find(t[0]) == std::string_view::npos)
      fail("{}:{}: label '{}' is not one of {}", path, l.number, std::string(t.substr(0, 40)), allowed);
    labels.emplace_back(t[0] - '0', l.number);
  }
  return labels;
}

}  // namespace

std::vector<PiqaItem> read_piqa(const std::string& jsonl_path, const std::string& labels_path) {
  auto rows = read_jsonl(jsonl_path);
  auto labels = read_labels(labels_path, "01");
  if (labels.size() != rows.size())
    fail("{}: {} labels for {} rows of {}", labels_path, labels.size(), rows.size(), jsonl_path);
  std::vector<PiqaItem> items;
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& [j, line] = rows[i];
    items.push_back({str_field(j, "goal", jsonl_path, line), str_field(j, "sol1", jsonl_path, line),
                     str_field(j, "sol2", jsonl_path, line), labels[i].first});
  }
  return items;
}

std::vector<ArcItem> read_arc(const std::string& path) {
  std::vector<ArcItem> items;
  for (const auto& [j, line] : read_jsonl(path)) {
    ArcItem it;
    it.id = str_field(j, "id", path, line);
    const Json& q = field(j, "question", path, line);
    if (!q.is_object()) fail("{}:{}: field 'question' is not an object", path, line);
    it.stem = str_field(q, "stem", path, line);
    const Json& choices = field(q, "choices", path, line);
    if (!choices.is_array() || choices.empty() || choices.size() > 5)
      fail("{}:{}: 'choices' must be an array of 1 to 5 choices", path, line);
    // lm-eval maps answerKey "1".."5" to "A".."E" and takes its index in "ABCDE" as the gold position; that
    // is only the answer's position when the labels run A, B, C... or 1, 2, 3... in order, which is checked
    // here.
    std::string labels;
    for (const Json& c : choices) {
      if (!c.is_object()) fail("{}:{}: a choice is not an object", path, line);
      it.choices.push_back(str_field(c, "text", path, line));
      std::string label = str_field(c, "label", path, line);
      if (label.size() != 1) fail("{}:{}: choice label '{}' is not one character", path, line, label);
      labels += label;
    }
    bool letters = labels == std::string("ABCDE").substr(0, labels.size());
    bool digits = labels == std::string("12345").substr(0, labels.size());
    if (!letters && !digits)
      fail("{}:{}: choice labels '{}' are not A, B, C... or 1, 2, 3...", path, line, labels);
    std::string key = str_field(j, "answerKey", path, line);
    size_t gold = key.size() == 1 ? std::string("ABCDE").find(key[0]) : std::string::npos;
    if (gold == std::string::npos && key.size() == 1) gold = std::string("12345").find(key[0]);
    if (gold == std::string::npos || gold >= it.choices.size())
      fail("{}:{}: answerKey '{}' is not one of the choice labels '{}'", path, line, key, labels);
    it.gold = int(gold);
    items.push_back(std::move(it));
  }
  return items;
}

static std::vector<HellaswagItem> read_hellaswag_jsonl(const std::string& path) {
  std::vector<HellaswagItem> items;
  for (const auto& [j, line] : read_jsonl(path)) {
    HellaswagItem it;
    // lm-eval v0.3 HellaSwag._process_doc: ctx = ctx_a + " " + ctx_b.capitalize().
    std::string activity = str_field(j, "activity_label", path, line),
                ctx_a = str_field(j, "ctx_a", path, line);
    std::string ctx_b = str_field(j, "ctx_b", path, line);
    it.query = activity + ": " + ctx_a + " " + py_capitalize_ascii(ctx_b);
    const Json& endings = field(j, "endings", path, line);
    if (!endings.is_array() || endings.size() != 4)
      fail("{}:{}: 'endings' must be an array of 4", path, line);
    for (int k = 0; k < 4; ++k) {
      if (!endings[size_t(k)].is_string()) fail("{}:{}: an ending is not a string", path, line);
      it.endings[size_t(k)] = endings[size_t(k)].get<std::string>();
    }
    const Json& label = field(j, "label", path, line);
    int64_t gold = -1;
    if (label.is_number_integer()) gold = label.get<int64_t>();
    if (label.is_string() && label.get<std::string>().size() == 1) gold = label.get<std::string>()[0] - '0';
    if (gold < 0 || gold > 3) fail("{}:{}: 'label' must be 0..3", path, line);
    it.gold = int(gold);
    items.push_back(std::move(it));
  }
  return items;
}

std::vector<HellaswagItem> read_hellaswag(const std::string& path) {
  if (path.size() >= 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0) return read_hellaswag_jsonl(path);
  std::string text = read_text(path);
  std::vector<Line> lines = split_lines(text);
  if (lines.size() % 6 != 0)
    fail(
        "{}:{}: incomplete task: the text form has 6 lines per task (context, gold, 4 endings), file has {} "
        "lines",
        path, lines.size() - lines.size() % 6 + 1, lines.size());
  std::vector<HellaswagItem> items;
  for (size_t i = 0; i < lines.size(); i += 6) {
    HellaswagItem it;
    it.query = std::string(lines[i].text);
    std::string_view g = lines[i + 1].text;
    if (g.size() != 1 || g[0] < '0' || g[0] > '3')
      fail("{}:{}: gold line '{}' is not 0..3", path, lines[i + 1].number, std::string(g.substr(0, 40)));
    it.gold = g[0] - '0';
    for (size_t k = 0; k < 4; ++k) it.endings[k] = std::string(lines[i + 2 + k].text);
    items.push_back(std::move(it));
  }
  return items;
}

std::vector<WinograndeItem> read_winogrande(const std::string& jsonl_path, const std::string& labels_path) {
  auto rows = read_jsonl(jsonl_path);
  std::vector<std::pair<int, size_t>> labels;
  if (!labels_path.empty()) {
    labels = read_labels(labels_path, "12");
    if (labels.size() != rows.size())
      fail("{}: {} labels for {} rows of {}", labels_path, labels.size(), rows.size(), jsonl_path);
  }
  std::vector<WinograndeItem> items;
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& [j, line] = rows[i];
    WinograndeItem it;
    it.sentence = str_field(j, "sentence", jsonl_path, line);
    if (it.sentence.find('_') == std::string::npos)
      fail("{}:{}: sentence has no '_' blank", jsonl_path, line);
    it.option1 = str_field(j, "option1", jsonl_path, line);
    it.option2 = str_field(j, "option2", jsonl_path, line);
    int answer = 0;
    if (j.contains("answer")) {
      std::string a = str_field(j, "answer", jsonl_path, line);
      if (a == "1" || a == "2")
        answer = a[0] - '0';
      else if (!a.empty())
        fail("{}:{}: answer '{}' is not \"1\" or \"2\"", jsonl_path, line, a.substr(0, 40));
    }
    if (!labels.empty()) {
      if (answer != 0 && answer != labels[i].first)
        fail("{}:{}: label {} disagrees with the answer {} in {}:{}", labels_path, labels[i].second,
             labels[i].first, answer, jsonl_path, line);
      answer = labels[i].first;
    }
    if (answer == 0) fail("{}:{}: no answer in the row and no labels file", jsonl_path, line);
    it.answer = answer;
    items.push_back(std::move(it));
  }
  return items;
}

std::vector<CsvRecord> parse_csv(std::string_view text, const std::string& path) {
  std::vector<CsvRecord> records;
  size_t i = 0, n = text.size(), line = 1;
  auto at_eol = [&](size_t k) {
    return k < n && (text[k] == '\n' || (text[k] == '\r' && k + 1 < n && text[k + 1] == '\n'));
  };
  auto skip_eol = [&]() {
    i += text[i] == '\r' ? 2 : 1;
    ++line;
  };
  while (i < n) {
    if (at_eol(i)) {  // blank line
      skip_eol();
      continue;
    }
    CsvRecord rec;
    rec.line = line;
    while (true) {
      std::string f;
      if (i < n && text[i] == '"') {
        size_t start_line = line;
        ++i;
        while (true) {
          if (i >= n) fail("{}:{}: unterminated quoted field", path, start_line);
          char c = text[i];
          if (c == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              f += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (c == '\n') ++line;
          f += c;
          ++i;
        }
        if (i < n && text[i] != ',' && !at_eol(i))
          fail("{}:{}: unexpected character after a closing quote (quotes inside a field must be doubled)",
               path, line);
      } else {
        while (i < n && text[i] != ',' && !at_eol(i)) f += text[i++];
      }
      rec.fields.push_back(std::move(f));
      if (i < n && text[i] == ',') {
        ++i;
        continue;
      }
      if (i < n) skip_eol();
      break;
    }
    records.push_back(std::move(rec));
  }
  return records;
}

std::vector<MmluItem> read_mmlu_csv(const std::string& path) {
  std::string text = read_text(path);
  std::vector<MmluItem> items;
  for (CsvRecord& r : parse_csv(text, path)) {
    if (r.fields.size() != 6)
      fail("{}:{}: {} fields, expected 6 (question, A, B, C, D, answer)", path, r.line, r.fields.size());
    MmluItem it;
    it.question = std::move(r.fields[0]);
    for (size_t k = 0; k < 4; ++k) it.choices[k] = std::move(r.fields[k + 1]);
    const std::string& a = r.fields[5];
    if (a.size() != 1 || a[0] < 'A' || a[0] > 'D')
      fail("{}:{}: answer '{}' is not A, B, C or D", path, r.line, a.substr(0, 40));
    it.answer = a[0] - 'A';
    items.push_back(std::move(it));
  }
  return items;
}

std::vector<MmluSubject> read_mmlu(const std::string& dir) {
  std::map<std::string, MmluSubject> subjects;
  for (const char* split : {"dev", "test"}) {
    fs::path sub = fs::path(dir) / split;
    std::error_code ec;
    if (!fs::is_directory(sub, ec)) fail("{}: MMLU folder not found", sub.string());
    std::string suffix = std::string("_") + split + ".csv";
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(sub, ec)) files.push_back(e.path());
    if (ec) fail("{}: cannot list: {}", sub.string(), ec.message());
    for (const fs::path& p : files) {
      std::string name = p.filename().string();
      if (name.size() <= suffix.size() ||
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
        continue;  // not a <subject>_<split>.csv file
      std::string subject = name.substr(0, name.size() - suffix.size());
      MmluSubject& s = subjects[subject];
      s.name = subject;
      (split[0] == 'd' ? s.dev : s.test) = read_mmlu_csv(p.string());
    }
  }
  if (subjects.empty()) fail("{}: no MMLU CSV files under dev/ and test/", dir);
  std::vector<MmluSubject> out;
  for (auto& [name, s] : subjects) {
    if (s.dev.empty()) fail("{}/dev/{}_dev.csv: missing or empty (subject in test/)", dir, name);
    if (s.test.empty()) fail("{}/test/{}_test.csv: missing or empty (subject in dev/)", dir, name);
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::string> read_lambada(const std::string& path) {
  std::string text = read_text(path);
  std::vector<std::string> out;
  for (const Line& l : split_lines(text)) {
    if (l.text.empty()) continue;
    // lm-eval: context = text.rsplit(" ", 1)[0], target = " " + text.rsplit(" ", 1)[1].
    size_t sp = l.text.rfind(' ');
    if (sp == std::string_view::npos || sp == 0 || sp + 1 == l.text.size())
      fail("{}:{}: a LAMBADA passage needs a context and a final word separated by a space", path, l.number);
    out.emplace_back(l.text);
  }
  return out;
}

}  // namespace lowbit

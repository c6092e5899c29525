#include "eval/ppl_texts.h"

#include <fmt/ranges.h>

#include "core/error.h"
#include "core/json.h"
#include "core/mmap.h"
#include "eval/task_text.h"

namespace lowbit {

namespace {

// The file's lines as Python's `for line in open(path, encoding="utf-8")` yields them: universal newlines
// ("\r\n" and "\r" read as "\n"), each line keeping its "\n" (the last one may lack it). Rejects invalid
// UTF-8.
std::vector<std::string> python_lines(const std::string& path) {
  std::string raw = read_file(path);
  std::string text;
  text.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\r') {
      text.push_back('\n');
      if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
    } else {
      text.push_back(raw[i]);
    }
  }
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    end = end == std::string::npos ? text.size() : end + 1;
    lines.emplace_back(text, pos, end - pos);
    pos = end;
  }
  for (size_t n = 0; n < lines.size(); ++n)
    if (!valid_utf8(lines[n])) fail("{}:{}: invalid UTF-8", path, n + 1);
  return lines;
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  size_t n = 0;
  for (const auto& p : parts) n += p.size() + sep.size();
  std::string out;
  out.reserve(n);
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

// HF wikitext-2-raw-v1 rows: a line with any non-space keeps its "\n"; a blank line becomes "".
EvalText wikitext2(const SearchPaths& paths) {
  std::string f = resolve_data_path("wikitext-2-raw/wiki.test.raw", paths);
  auto rows = python_lines(f);
  for (auto& r : rows)
    if (py_strip(r).empty()) r.clear();
  return {"wikitext2", join(rows, "\n\n"), {f}, ""};
}

// HF ptb_text_only rows: each line stripped.
EvalText ptb(const SearchPaths& paths, const char* name, const char* file, std::string_view sep) {
  std::string f = resolve_data_path(file, paths);
  auto rows = python_lines(f);
  for (auto& r : rows) r = py_strip(r);
  return {name, join(rows, sep), {f}, ""};
}

EvalText c4_sample(const SearchPaths& paths) {
  std::string f = resolve_data_path("c4/c4-sample.jsonl", paths);
  auto lines = python_lines(f);
  std::vector<std::string> texts;
  texts.reserve(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string where = fmt::format("{}:{}", f, i + 1);
    Json j = parse_json_text(lines[i], where);
    auto it = j.is_object() ? j.find("text") : j.end();
    if (!j.is_object() || it == j.end() || !it->is_string())
      fail("{}: expected {{\"text\": \"...\"}}", where);
    texts.push_back(it->get<std::string>());
  }
  if (texts.empty()) fail("{}: no documents", f);
  return {"c4-sample",
          join(texts, " "),
          {f},
          fmt::format("c4-sample: {} documents of C4 (split unknown), NOT the C4 validation shard",
                      texts.size())};
}

}  // namespace

const std::vector<std::string>& eval_text_names() {
  static const std::vector<std::string> names = {"wikitext2", "ptb", "ptb-new", "c4-sample"};
  return names;
}

EvalText build_eval_text(const std::string& name_or_path, const SearchPaths& paths) {
  const std::string& n = name_or_path;
  if (n == "wikitext2") return wikitext2(paths);
  if (n == "ptb") return ptb(paths, "ptb", "ptb/ptb.valid.txt", "\n\n");
  if (n == "ptb-new") return ptb(paths, "ptb-new", "ptb/ptb.test.txt", " ");
  if (n == "c4-sample") return c4_sample(paths);
  bool explicit_file = n.rfind("text:", 0) == 0;
  std::string file = explicit_file ? n.substr(5) : n;
  if (explicit_file || (path_exists(file) && !is_directory(file))) {
    if (is_directory(file)) fail("{}: is a directory, not a text file", file);
    return {file, read_file(file), {file}, ""};
  }
  fail("{}: unknown evaluation text (valid: {}, text:<path>, or an existing file)", n,
       fmt::join(eval_text_names(), ", "));
}

}  // namespace lowbit

// The published numbers of Huang et al. 2024 ("How Good Are Low-bit Quantized LLaMA3 Models? An Empirical
// Study", arXiv 2404.14047), from shared/paper/*.csv, shown beside a LLaMA-3-8B study.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <optional>
#include <set>

#include "core/error.h"
#include "core/mmap.h"
#include "study/report_internal.h"

namespace lowbit::report_detail {

namespace {

constexpr uintmax_t kMaxCsvBytes = 1 << 20;  // the files are a few KB; anything larger is not ours
constexpr size_t kMaxFields = 64;

struct CsvRow {
  size_t line;
  std::vector<std::string> fields;
};

struct Csv {
  std::string path;
  std::vector<std::string> header;
  std::vector<CsvRow> rows;
  size_t col(const std::string& name) const {
    return size_t(std::find(header.begin(), header.end(), name) - header.begin());
  }
};

// One CSV record on one line (RFC 4180 quoting; the paper's files have no multi-line fields). Returns false
// on an unterminated quote or text after a closing quote.
bool split_csv_line(std::string_view line, std::vector<std::string>& out) {
  out.clear();
  size_t i = 0;
  while (true) {
    std::string f;
    if (i < line.size() && line[i] == '"') {
      ++i;
      while (true) {
        if (i >= line.size()) return false;
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            f += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        f += line[i++];
      }
      if (i < line.size() && line[i] != ',') return false;
    } else {
      size_t e = line.find(',', i);
      if (e == std::string_view::npos) e = line.size();
      f.assign(line.substr(i, e - i));
      i = e;
    }
    out.push_back(std::move(f));
    if (out.size() > kMaxFields) return false;
    if (i >= line.size()) return true;
    ++i;  // the comma
  }
}

bool parse_number(const std::string& s, double& v) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && std::isfinite(v);
}

// Reads and validates a paper CSV: the named columns must exist, every row has the header's field count, a
// method, and numbers (or nothing) in the numeric columns. nullopt when the file does not exist.
std::optional<Csv> read_paper_csv(const std::string& path, const std::vector<std::string>& numeric) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) fail("{}: cannot read: {}", path, ec.message());
  if (size > kMaxCsvBytes)
    fail("{}: {} bytes, more than a paper table can be ({} max)", path, size, kMaxCsvBytes);
  std::string text = read_file(path);
  Csv csv;
  csv.path = path;
  size_t line_no = 0, pos = 0;
  std::vector<std::string> fields;
  while (pos < text.size()) {
    size_t e = text.find('\n', pos);
    if (e == std::string::npos) e = text.size();
    std::string_view line(text.data() + pos, e - pos);
    pos = e + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    if (!split_csv_line(line, fields))
      fail("{}:{}: malformed CSV line (quoting or too many fields)", path, line_no);
    for (auto& f : fields) {  // trim
      size_t a = f.find_first_not_of(" \t"), b = f.find_last_not_of(" \t");
      f = a == std::string::npos ? "" : f.substr(a, b - a + 1);
    }
    if (csv.header.empty()) {
      csv.header = fields;
      for (const auto& n : numeric)
        if (csv.col(n) == csv.header.size()) fail("{}:{}: header has no column '{}'", path, line_no, n);
      if (csv.col("method") == csv.header.size()) fail("{}:{}: header has no column 'method'", path, line_no);
      continue;
    }
    if (fields.size() != csv.header.size())
      fail("{}:{}: {} fields, the header has {}", path, line_no, fields.size(), csv.header.size());
    if (fields[csv.col("method")].empty()) fail("{}:{}: empty method", path, line_no);
    for (const auto& n : numeric) {
      const std::string& f = fields[csv.col(n)];
      double v;
      if ((!f.empty() || n == "wbits") && !parse_number(f, v))
        fail("{}:{}: {} is '{}', not a number", path, line_no, n, f);
    }
    csv.rows.push_back({line_no, fields});
  }
  if (csv.header.empty()) fail("{}:1: empty file, expected a header line", path);
  return csv;
}

// "1.9e3" -> "1.9E3" as in the paper; the published text is kept, not re-rounded.
std::string paper_text(const std::string& s) {
  if (s.empty()) return "-";
  std::string out;
  for (char c : s) {
    if (c == '+') continue;
    out += c == 'e' ? 'E' : c;
  }
  return out;
}

std::string upper(std::string s) {
  for (char& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

bool num_eq(const Json& j, const char* key, const std::string& field) {
  auto it = j.find(key);
  double v;
  return it != j.end() && it->is_number() && parse_number(field, v) && it->get<double>() == v;
}

// The paper's #W against a row: its own bit count (PB-LLM's 1.7) to the paper's one decimal, else wbits.
bool bits_eq(const ReportRow& r, const std::string& field) {
  const double* p = r.find("paper_bits");
  double v;
  if (p && parse_number(field, v)) return std::fabs(std::round(*p * 10) / 10 - v) < 1e-9;
  return num_eq(r.settings, "wbits", field);
}

const char* const kPtqNumeric[] = {"wbits", "abits",    "group",         "wikitext2", "c4",         "ptb",
                                   "piqa",  "arc_easy", "arc_challenge", "hellaswag", "winogrande", "avg"};
const char* const kLoraNumeric[] = {"wbits",         "mmlu_humanities", "mmlu_stem",  "mmlu_social",
                                    "mmlu_other",    "mmlu_avg",        "piqa",       "arc_easy",
                                    "arc_challenge", "hellaswag",       "winogrande", "avg"};

DisplayTable missing_note(const std::string& id, const std::string& title, const std::string& path) {
  DisplayTable t;
  t.id = id;
  t.title = title;
  t.notes.push_back("Not shown: " + path + " not found.");
  return t;
}

}  // namespace

std::vector<DisplayTable> published_tables(const ModelSection& s, const std::string& paper_dir) {
  std::vector<DisplayTable> out;
  const std::string title = "Published (Huang et al. 2024)";
  std::string ptq_path = (std::filesystem::path(paper_dir) / "llama3-8b-ptq.csv").lexically_normal().string();
  auto ptq =
      read_paper_csv(ptq_path, std::vector<std::string>(std::begin(kPtqNumeric), std::end(kPtqNumeric)));
  if (!ptq) {
    out.push_back(missing_note("published_ptq", title, ptq_path));
  } else {
    // Rows with this study's settings first, in the study's row order; then the rest in the paper's order.
    std::vector<size_t> order;
    std::set<size_t> taken;
    size_t cm = ptq->col("method"), cw = ptq->col("wbits"), ca = ptq->col("abits"), cg = ptq->col("group");
    for (const auto& r : s.rows) {
      for (size_t i = 0; i < ptq->rows.size(); ++i) {
        const auto& f = ptq->rows[i].fields;
        if (taken.count(i) || upper(f[cm]) != upper(r.settings["method"].get<std::string>())) continue;
        if (bits_eq(r, f[cw]) && num_eq(r.settings, "abits", f[ca]) && num_eq(r.settings, "group", f[cg])) {
          order.push_back(i);
          taken.insert(i);
        }
      }
    }
    size_t n_match = order.size();
    for (size_t i = 0; i < ptq->rows.size(); ++i)
      if (!taken.count(i)) order.push_back(i);
    DisplayTable t;
    t.id = "published_ptq";
    t.title = title;
    t.header = {"Method", "#W",    "#A",    "#G",     "Wiki2", "C4", "PTB",
                "PIQA",   "ARC-e", "ARC-c", "HellaS", "Wino",  "Avg"};
    t.numeric.assign(t.header.size(), true);
    t.numeric[0] = false;
    for (size_t i : order) {
      const auto& f = ptq->rows[i].fields;
      std::vector<std::string> line = {f[cm], f[cw], f[ca], f[cg] == "-1" ? "-" : f[cg]};
      for (size_t k = 3; k < std::size(kPtqNumeric); ++k)
        line.push_back(paper_text(f[ptq->col(kPtqNumeric[k])]));
      t.rows.push_back(std::move(line));
    }
    t.notes.push_back(fmt::format(
        "LLaMA-3-8B as published in Huang et al. 2024 (arXiv 2404.14047), from {}; {} row(s) with this "
        "study's "
        "settings first. Their C4 is the official validation shard; 2048-token windows; accuracy in percent.",
        ptq_path, n_match));
    out.push_back(std::move(t));
  }

  if (s.has_mmlu || s.has_finetune) {
    std::string lora_path =
        (std::filesystem::path(paper_dir) / "llama3-8b-lora-ft.csv").lexically_normal().string();
    auto lora =
        read_paper_csv(lora_path, std::vector<std::string>(std::begin(kLoraNumeric), std::end(kLoraNumeric)));
    const std::string ltitle = "Published LoRA fine-tuning, MMLU (Huang et al. 2024)";
    if (!lora) {
      out.push_back(missing_note("published_lora", ltitle, lora_path));
    } else {
      DisplayTable t;
      t.id = "published_lora";
      t.title = ltitle;
      t.header = {"Method", "#W",    "Hums.", "STEM",   "Social", "Other", "MMLU",
                  "PIQA",   "ARC-e", "ARC-c", "HellaS", "Wino",   "Avg"};
      t.numeric.assign(t.header.size(), true);
      t.numeric[0] = false;
      for (const auto& r : lora->rows) {
        std::vector<std::string> line = {r.fields[lora->col("method")]};
        for (const char* k : kLoraNumeric) line.push_back(paper_text(r.fields[lora->col(k)]));
        t.rows.push_back(std::move(line));
      }
      t.notes.push_back("4-bit LLaMA-3-8B LoRA-fine-tuned on Alpaca; MMLU 5-shot, percent; from " +
                        lora_path + ".");
      out.push_back(std::move(t));
    }
  }
  return out;
}

}  // namespace lowbit::report_detail

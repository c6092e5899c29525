// Cells -> sections and rows of the report, and the number formats of the paper's tables.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>
#include <set>

#include "core/error.h"
#include "quant/method.h"
#include "study/report_internal.h"

namespace lowbit::report_detail {

const std::vector<Column> kZeroShot = {{"piqa", "PIQA", Kind::kAcc},
                                       {"arc_easy", "ARC-e", Kind::kAcc},
                                       {"arc_challenge", "ARC-c", Kind::kAcc},
                                       {"hellaswag", "HellaS", Kind::kAcc},
                                       {"winogrande", "Wino", Kind::kAcc}};

std::string format_full(double v) {
  return fmt::format("{}", v);  // shortest text that reads back to the same double; inf, -inf, nan
}

std::string format_sci(double v) {
  if (!std::isfinite(v)) return format_full(v);
  // fmt rounds the mantissa and carries into the exponent (9.96E3 -> 1.0E4); then drop the '+' and the
  // exponent's leading zeros: "1.9E+03" -> "1.9E3", "5.3E-05" -> "5.3E-5".
  std::string s = fmt::format("{:.1E}", v);
  size_t e = s.find('E');
  std::string mant = s.substr(0, e);
  std::string exp = s.substr(e + 1);
  std::string sign;
  if (!exp.empty() && (exp[0] == '+' || exp[0] == '-')) {
    if (exp[0] == '-') sign = "-";
    exp.erase(0, 1);
  }
  size_t nz = exp.find_first_not_of('0');
  exp = nz == std::string::npos ? "0" : exp.substr(nz);
  return mant + "E" + sign + exp;
}

std::string format_ppl(double v) {
  if (!std::isfinite(v)) return format_full(v);
  std::string s = fmt::format("{:.2f}", v);
  // Decide on the rounded text, so 999.996 prints as 1.0E3 rather than "1000.00".
  if (std::fabs(std::stod(s)) >= 1000) return format_sci(v);
  return s;
}

std::string format_pct(double fraction) {
  if (!std::isfinite(fraction)) return format_full(fraction);
  return fmt::format("{:.1f}", fraction * 100);
}

std::string format_kld(double v) {
  if (!std::isfinite(v)) return format_full(v);
  if (v != 0 && std::fabs(v) < 0.001) return format_sci(v);
  return fmt::format("{:.4f}", v);
}

std::string format_bits(double v) {
  if (!std::isfinite(v)) return format_full(v);
  return fmt::format("{:.2f}", v);
}

std::string json_scalar(const Json& j) {
  if (j.is_string()) return j.get<std::string>();
  return j.dump();
}

std::string group_text(const Json& row) {
  auto it = row.find("group");
  if (it == row.end() || (it->is_number() && it->get<double>() == -1)) return "-";
  return json_scalar(*it);
}

// The fine-tune methods as the paper's Table 2 names them (train/qlora.h).
const char* finetune_label(const std::string& m) {
  if (m == "lora") return "LoRA";
  if (m == "qlora") return "QLoRA";
  if (m == "ir-qlora") return "IR-QLoRA";
  return nullptr;
}

bool is_finetune_row(const ReportRow& r) {
  return r.settings.is_object() && r.settings.contains("finetune");
}

bool in_lora_table(const ReportRow& r) {
  const Json& m = r.settings["method"];
  auto a = r.settings.find("abits");
  const bool float_acts = a == r.settings.end() || (a->is_number() && a->get<double>() == 16);
  return is_finetune_row(r) || m == "fp16" || (m == "nf4" && float_acts);
}

std::string method_label(const Json& row) {
  std::string m = row.contains("method") ? json_scalar(row["method"]) : "?";
  // The registry's label (gptq -> GPTQ), the fine-tune methods' (qlora -> QLoRA); fp16 and methods this
  // build does not know, upper-cased.
  std::string name = m;
  if (const Method* method = find_method(m))
    name = method->label;
  else if (const char* ft = finetune_label(m))
    name = ft;
  else
    for (char& c : name) c = char(std::toupper(static_cast<unsigned char>(c)));
  // Settings other than the table's own columns tell rows apart: "GPTQ (act-order)", "RTN (sym=false)".
  std::vector<std::string> opts;
  for (auto it = row.begin(); it != row.end(); ++it) {
    const std::string& k = it.key();
    // The calibration identity (the runner adds it to calibrated rows) is the study's, the same on every row:
    // the provenance footer shows it.
    // A fine-tune row's settings are said under the LoRA table (and tell rows apart only when they differ:
    // group_cells adds those).
    if (k == "method" || k == "wbits" || k == "abits" || k == "group" || k == "calibration" ||
        k == "finetune")
      continue;
    if (k == "act_order" && it->is_boolean()) {
      if (it->get<bool>()) opts.push_back("act-order");
      continue;
    }
    opts.push_back(k + "=" + json_scalar(*it));
  }
  if (!opts.empty()) {
    name += " (";
    for (size_t i = 0; i < opts.size(); ++i) name += (i ? ", " : "") + opts[i];
    name += ")";
  }
  return name;
}

std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        // XML 1.0 forbids most control characters, even escaped.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') {
          out += ' ';
        } else {
          out += c;
        }
    }
  }
  return out;
}

bool is_llama3_8b(const Json& info) {
  auto is = [&](const char* k, int64_t v) {
    auto it = info.find(k);
    return it != info.end() && it->is_number() && it->get<double>() == double(v);
  };
  return info.is_object() && is("n_layer", 32) && is("n_embd", 4096) && is("n_vocab", 128256) &&
         is("n_kv_head", 8) && is("n_ff", 14336);
}

namespace {

std::string where(const CellRecord& c) {
  return fmt::format("report: cell {} {} {}", c.model, c.row.dump(), c.column);
}

// A metric as a double: numbers, or the strings "inf"/"-inf"/"nan" (JSON has no non-finite numbers).
std::optional<double> metric(const CellRecord& c, const char* name) {
  auto it = c.metrics.find(name);
  if (it == c.metrics.end() || it->is_null()) return std::nullopt;
  if (it->is_number()) return it->get<double>();
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    if (s == "inf" || s == "+inf") return HUGE_VAL;
    if (s == "-inf") return -HUGE_VAL;
    if (s == "nan") return std::nan("");
  }
  fail("{}: metric {} is {}, not a number", where(c), name, it->dump());
}

void put(ReportRow& r, const std::string& id, std::optional<double> v) {
  if (v) r.values[id] = *v;
}

bool is_fixed_ppl(const std::string& ds) {
  return ds == "wikitext2" || ds == "c4" || ds == "c4-sample" || ds == "ptb";
}
bool is_zero_shot(const std::string& t) {
  return std::any_of(kZeroShot.begin(), kZeroShot.end(), [&](const Column& c) { return c.id == t; });
}

// The values one (latest) cell contributes to its row.
void extract(const CellRecord& c, ReportRow& r) {
  const std::string& col = c.column;
  if (col == "quant") {
    put(r, "bits_per_weight", metric(c, "bits_per_weight"));
    put(r, "paper_bits", metric(c, "paper_bits_per_weight"));
  } else if (col.rfind("ppl:", 0) == 0) {
    std::string ds = col.substr(4);
    put(r, is_fixed_ppl(ds) ? ds : col, metric(c, "ppl"));
    if (ds == "wikitext2") put(r, "kld", metric(c, "kld_mean"));
  } else if (col.rfind("task:", 0) == 0) {
    std::string t = col.substr(5);
    put(r, is_zero_shot(t) ? t : col, metric(c, "acc"));
  } else if (col == "mmlu") {
    put(r, "mmlu_humanities", metric(c, "humanities"));
    put(r, "mmlu_stem", metric(c, "stem"));
    put(r, "mmlu_social", metric(c, "social_sciences"));
    put(r, "mmlu_other", metric(c, "other"));
    put(r, "mmlu_avg", metric(c, "acc"));
  } else if (col == "finetune") {
    put(r, "finetune_steps", metric(c, "steps"));
    put(r, "finetune_tokens", metric(c, "tokens"));
    put(r, "finetune_loss", metric(c, "final_loss"));
    put(r, "bits_per_weight", metric(c, "bits_per_weight"));  // the base's
    auto d = c.provenance.is_object() ? c.provenance.find("finetune_data") : c.provenance.end();
    if (c.provenance.is_object() && d != c.provenance.end() && d->is_string()) r.finetune_data = *d;
  }
  // Other columns (added by later issues) have no place in the paper's tables.
}

}  // namespace

std::vector<ModelSection> group_cells(const std::vector<CellRecord>& cells) {
  std::vector<const CellRecord*> order;
  order.reserve(cells.size());
  for (const auto& c : cells) {
    if (!c.row.is_object()) fail("{}: row is not a JSON object", where(c));
    auto m = c.row.find("method");
    if (m == c.row.end() || !m->is_string() || m->get_ref<const std::string&>().empty())
      fail("{}: row has no method", where(c));
    if (!c.metrics.is_object() && !c.metrics.is_null()) fail("{}: metrics is not a JSON object", where(c));
    order.push_back(&c);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const CellRecord* a, const CellRecord* b) { return a->seq < b->seq; });

  // In seq order: sections and rows are created on first appearance; a later record of the same column
  // replaces the earlier one.
  std::vector<ModelSection> sections;
  std::vector<std::vector<std::map<std::string, const CellRecord*>>> latest;  // [section][row][column]
  std::map<std::string, size_t> section_of;
  std::vector<std::map<std::string, size_t>> row_of;
  for (const CellRecord* c : order) {
    std::string skey = c->model + '\0' + c->model_hash;
    auto [sit, snew] = section_of.try_emplace(skey, sections.size());
    if (snew) {
      ModelSection s;
      s.model = c->model;
      s.model_hash = c->model_hash;
      s.model_info = c->model_info;
      sections.push_back(std::move(s));
      latest.emplace_back();
      row_of.emplace_back();
    }
    size_t si = sit->second;
    ModelSection& s = sections[si];
    if (s.model_info.is_null() || (s.model_info.is_object() && s.model_info.empty()))
      s.model_info = c->model_info;
    if (std::find(s.lowbit_versions.begin(), s.lowbit_versions.end(), c->lowbit_version) ==
        s.lowbit_versions.end())
      s.lowbit_versions.push_back(c->lowbit_version);
    auto [rit, rnew] = row_of[si].try_emplace(c->row.dump(), s.rows.size());
    if (rnew) {
      ReportRow r;
      r.settings = c->row;
      r.label = method_label(c->row);
      r.first_seq = c->seq;
      s.rows.push_back(std::move(r));
      latest[si].emplace_back();
    }
    latest[si][rit->second][c->column] = c;
  }

  // Fine-tune rows that share a label (two QLoRA rows) are told apart by the settings they differ in.
  for (ModelSection& s : sections) {
    std::map<std::string, std::vector<ReportRow*>> by_label;
    for (ReportRow& r : s.rows)
      if (is_finetune_row(r) && r.settings["finetune"].is_object()) by_label[r.label].push_back(&r);
    for (auto& [label, rows] : by_label) {
      if (rows.size() < 2) continue;
      std::set<std::string> differ;
      for (const ReportRow* r : rows)
        for (auto it = r->settings["finetune"].begin(); it != r->settings["finetune"].end(); ++it)
          for (const ReportRow* o : rows) {
            auto v = o->settings["finetune"].find(it.key());
            if (v == o->settings["finetune"].end() || *v != *it) differ.insert(it.key());
          }
      for (ReportRow* r : rows) {
        std::string extra;
        for (const std::string& k : differ) {
          auto v = r->settings["finetune"].find(k);
          extra += (extra.empty() ? "" : ", ") + k + "=" +
                   (v == r->settings["finetune"].end() ? "-" : json_scalar(*v));
        }
        if (!extra.empty()) r->label += r->label.back() == ')' ? " [" + extra + "]" : " (" + extra + ")";
      }
    }
  }

  std::map<std::string, int> name_count;
  for (const auto& s : sections) name_count[s.model]++;
  for (size_t si = 0; si < sections.size(); ++si) {
    ModelSection& s = sections[si];
    s.heading = s.model;
    if (name_count[s.model] > 1) s.heading += " (" + s.model_hash.substr(0, 12) + ")";
    std::set<std::string> extra_ppl, extra_task;
    bool has_c4 = false, has_c4s = false;
    for (size_t ri = 0; ri < s.rows.size(); ++ri) {
      ReportRow& r = s.rows[ri];
      for (const auto& [col, c] : latest[si][ri]) extract(*c, r);
      if (!r.find("bits_per_weight") && r.settings["method"] == "fp16") r.values["bits_per_weight"] = 16;
      // The paper's count is wbits unless the method recorded its own (PB-LLM's 1.7); rows quantized before
      // it was recorded are affine ones, where it is wbits.
      if (!r.find("paper_bits") && r.find("bits_per_weight") && r.settings.contains("wbits") &&
          r.settings["wbits"].is_number())
        r.values["paper_bits"] = r.settings["wbits"].get<double>();
      bool all = true;
      double sum = 0;
      for (const auto& t : kZeroShot) {
        const double* v = r.find(t.id);
        all = all && v;
        if (v) sum += *v;
      }
      if (all) r.values["avg"] = sum / double(kZeroShot.size());
      for (const auto& [id, v] : r.values) {
        if (id.rfind("ppl:", 0) == 0) extra_ppl.insert(id);
        if (id.rfind("task:", 0) == 0) extra_task.insert(id);
        if (id == "c4") has_c4 = true;
        if (id == "c4-sample") has_c4s = true;
        if (id.rfind("mmlu_", 0) == 0) s.has_mmlu = true;
      }
      if (is_finetune_row(r)) s.has_finetune = true;
    }
    // The paper has one C4 column (the official validation shard). Our c4-sample takes it when the official
    // one was not measured, with a note saying so.
    auto& cols = s.columns;
    cols.push_back({"wikitext2", "Wiki2", Kind::kPpl});
    if (has_c4) cols.push_back({"c4", "C4", Kind::kPpl});
    if (has_c4s || !has_c4) cols.push_back({"c4-sample", has_c4 ? "C4 sample" : "C4", Kind::kPpl});
    s.c4_sample_note = has_c4s;
    cols.push_back({"ptb", "PTB", Kind::kPpl});
    cols.insert(cols.end(), kZeroShot.begin(), kZeroShot.end());
    cols.push_back({"avg", "Avg", Kind::kAcc});
    cols.push_back({"kld", "KLD", Kind::kKld});
    cols.push_back({"paper_bits", "bits/w (paper)", Kind::kBits});
    cols.push_back({"bits_per_weight", "bits/w (stored)", Kind::kBits});
    for (const auto& id : extra_ppl) cols.push_back({id, id.substr(4), Kind::kPpl});
    for (const auto& id : extra_task) cols.push_back({id, id.substr(5), Kind::kAcc});
  }
  return sections;
}

}  // namespace lowbit::report_detail

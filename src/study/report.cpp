// Tables of a study as Markdown, CSV and JSON; render_report/write_report tie all renderers together.
#include "study/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/mmap.h"
#include "study/report_internal.h"

namespace lowbit {

using namespace report_detail;

namespace report_detail {

namespace {

std::string format_value(Kind k, const double* v) {
  if (!v) return "-";
  switch (k) {
    case Kind::kPpl:
      return format_ppl(*v);
    case Kind::kAcc:
      return format_pct(*v);
    case Kind::kKld:
      return format_kld(*v);
    case Kind::kBits:
      return format_bits(*v);
  }
  return "-";
}

std::string setting(const Json& row, const char* key) {
  auto it = row.find(key);
  return it == row.end() ? "-" : json_scalar(*it);
}

// #W: the paper's bit count where the method has its own (PB-LLM "1.7"), else wbits.
std::string weight_bits(const ReportRow& r) {
  const double* p = r.find("paper_bits");
  auto w = r.settings.find("wbits");
  if (p && !(w != r.settings.end() && w->is_number() && w->get<double>() == *p))
    return fmt::format("{:.3g}", *p);
  return setting(r.settings, "wbits");
}

// The note under the LoRA table for one fine-tune row: what it trained on, for how long, and how it ended.
std::string finetune_note(const ReportRow& r) {
  const Json& f = r.settings["finetune"];
  auto get = [&](const char* k) {
    auto it = f.find(k);
    return it == f.end() ? std::string("?") : json_scalar(*it);
  };
  const std::string data = r.finetune_data.empty() ? "(data file not recorded)" : r.finetune_data;
  std::string what =
      get("format") == "text"
          ? fmt::format(
                "{}-token windows of {} as plain text (the paper fine-tunes on Alpaca; this run did not)",
                get("seq_len"), data)
          : fmt::format("Alpaca records from {}", data);
  std::string s = fmt::format(
      "{}: {} steps of {} examples, {}; LoRA rank {}, alpha {}, dropout {}, lr {} ({}, warmup "
      "ratio {}), seed {}",
      r.label, get("steps"), get("batch"), what, get("rank"), get("alpha"), get("dropout"), get("lr"),
      get("schedule"), get("warmup_ratio"), get("seed"));
  const double* loss = r.find("finetune_loss");
  const double* tokens = r.find("finetune_tokens");
  if (loss) s += fmt::format("; final training loss {:.4f}", *loss);
  if (tokens) s += fmt::format(" after {} tokens", int64_t(*tokens));
  return s + ".";
}

DisplayTable lora_ft_table(const ModelSection& s) {
  DisplayTable t;
  t.id = "lora_ft";
  t.title = "LoRA fine-tuning (lowbit)";
  t.header = {"Method", "#W",    "Hums.", "STEM",   "Social", "Other", "MMLU",
              "PIQA",   "ARC-e", "ARC-c", "HellaS", "Wino",   "Avg"};
  t.numeric.assign(t.header.size(), true);
  t.numeric[0] = false;
  const char* ids[] = {"mmlu_humanities", "mmlu_stem",     "mmlu_social", "mmlu_other", "mmlu_avg", "piqa",
                       "arc_easy",        "arc_challenge", "hellaswag",   "winogrande", "avg"};
  for (const auto& r : s.rows) {
    if (!in_lora_table(r)) continue;
    std::vector<std::string> line = {r.label, weight_bits(r)};
    for (const char* id : ids) line.push_back(format_value(Kind::kAcc, r.find(id)));
    t.rows.push_back(std::move(line));
  }
  t.notes.push_back(
      "The layout of Huang et al. 2024, Table 2: MMLU 5-shot (each category the mean over its subjects; MMLU "
      "= "
      "accuracy over all questions) and zero-shot accuracy, percent; Avg = mean of the five zero-shot tasks. "
      "NormalFloat = the NF4 model without fine-tuning; QLoRA and IR-QLoRA are evaluated as NF4 base + "
      "unmerged adapter.");
  for (const auto& r : s.rows)
    if (is_finetune_row(r)) t.notes.push_back(finetune_note(r));
  t.notes.push_back(
      "The paper's numbers are LLaMA-3-8B LoRA-fine-tuned on Alpaca (Huang et al. 2024, arXiv 2404.14047, "
      "Table 2); they are printed beside a LLaMA-3-8B-shaped model's table.");
  return t;
}

}  // namespace

std::vector<DisplayTable> section_tables(const ModelSection& s) {
  std::vector<DisplayTable> out;
  DisplayTable t;
  t.id = "main";
  t.header = {"Method", "#W", "#A", "#G"};
  t.numeric = {false, true, true, true};
  for (const auto& c : s.columns) {
    t.header.push_back(c.header);
    t.numeric.push_back(true);
  }
  for (const auto& r : s.rows) {
    std::vector<std::string> line = {r.label, weight_bits(r), setting(r.settings, "abits"),
                                     group_text(r.settings)};
    for (const auto& c : s.columns) line.push_back(format_value(c.kind, r.find(c.id)));
    t.rows.push_back(std::move(line));
  }
  if (s.c4_sample_note)
    t.notes.push_back("C4 = the 300-document c4-sample, not the official validation shard.");
  t.notes.push_back(
      "Perplexity: lower is better. Accuracy: lm-eval `acc`, percent; Avg = mean of the five zero-shot "
      "tasks, "
      "only when all five were measured. KLD = mean KL divergence of the next-token distribution from FP16 "
      "on "
      "WikiText2. #G: group size, - = per channel.");
  out.push_back(std::move(t));

  // Rows of the LoRA table show their MMLU there; the MMLU table holds the others.
  auto in_mmlu_table = [&](const ReportRow& r) { return !(s.has_finetune && in_lora_table(r)); };
  bool mmlu_rows = false;
  for (const auto& r : s.rows)
    if (in_mmlu_table(r))
      for (const char* id : {"mmlu_humanities", "mmlu_stem", "mmlu_social", "mmlu_other", "mmlu_avg"})
        mmlu_rows = mmlu_rows || r.find(id);
  if (mmlu_rows) {
    DisplayTable m;
    m.id = "mmlu";
    m.title = "MMLU";
    m.header = {"Method", "#W", "#A", "#G", "Hums.", "STEM", "Social", "Other", "Avg"};
    m.numeric = {false, true, true, true, true, true, true, true, true};
    const char* ids[] = {"mmlu_humanities", "mmlu_stem", "mmlu_social", "mmlu_other", "mmlu_avg"};
    for (const auto& r : s.rows) {
      if (!in_mmlu_table(r)) continue;
      bool any = false;
      for (const char* id : ids) any = any || r.find(id);
      if (!any) continue;
      std::vector<std::string> line = {r.label, weight_bits(r), setting(r.settings, "abits"),
                                       group_text(r.settings)};
      for (const char* id : ids) line.push_back(format_value(Kind::kAcc, r.find(id)));
      m.rows.push_back(std::move(line));
    }
    m.notes.push_back(
        "Percent. Each category is the mean over its subjects; Avg = accuracy over all questions.");
    out.push_back(std::move(m));
  }
  if (s.has_finetune) out.push_back(lora_ft_table(s));
  return out;
}

std::vector<DisplayTable> with_published(std::vector<DisplayTable> own, std::vector<DisplayTable> published) {
  std::vector<DisplayTable> table1, table2, out;
  for (auto& p : published) (p.id == "published_lora" ? table2 : table1).push_back(std::move(p));
  auto flush = [&](std::vector<DisplayTable>& v) {
    for (auto& t : v) out.push_back(std::move(t));
    v.clear();
  };
  // Table 1 after the main and MMLU tables, Table 2 right after the LoRA table (last when there is none).
  for (auto& t : own) {
    const bool lora = t.id == "lora_ft";
    if (lora) flush(table1);
    out.push_back(std::move(t));
    if (lora) flush(table2);
  }
  flush(table1);
  flush(table2);
  return out;
}

namespace {

size_t display_width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;  // count UTF-8 code points
  return n;
}

std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out;
}

std::string markdown_table(const DisplayTable& t) {
  size_t nc = t.header.size();
  std::vector<std::vector<std::string>> all = {t.header};
  for (const auto& r : t.rows) all.push_back(r);
  std::vector<size_t> w(nc, 3);
  for (auto& r : all) {
    r.resize(nc);
    for (size_t i = 0; i < nc; ++i) {
      r[i] = md_cell(r[i]);
      w[i] = std::max(w[i], display_width(r[i]));
    }
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string s = "|";
    for (size_t i = 0; i < nc; ++i) {
      std::string pad(w[i] - display_width(r[i]), ' ');
      s += " " + (t.numeric[i] ? pad + r[i] : r[i] + pad) + " |";
    }
    return s + "\n";
  };
  std::string s = line(all[0]);
  s += "|";
  for (size_t i = 0; i < nc; ++i)
    s += " " + (t.numeric[i] ? std::string(w[i] - 1, '-') + ":" : std::string(w[i], '-')) + " |";
  s += "\n";
  for (size_t i = 1; i < all.size(); ++i) s += line(all[i]);
  return s;
}

}  // namespace

std::string render_markdown(const std::string& title, const std::vector<DisplaySection>& sections) {
  std::string md = "# " + title + "\n";
  if (sections.empty()) md += "\nNo results.\n";
  for (const auto& s : sections) {
    md += "\n## " + s.heading + "\n\n";
    for (const auto& line : s.info) md += line + "  \n";
    for (const auto& t : s.tables) {
      md += "\n";
      if (!t.title.empty()) md += "### " + t.title + "\n\n";
      if (!t.header.empty()) md += markdown_table(t) + "\n";
      for (const auto& n : t.notes) md += n + "\n";
    }
  }
  md +=
      "\n## Plots\n\n![Perplexity vs bits](ppl_vs_bits.svg)\n![Accuracy vs bits](acc_vs_bits.svg)\n"
      "![KL divergence vs bits](kld_vs_bits.svg)\n";
  return md;
}

namespace {

const char* const kCsvFixed[] = {
    "wikitext2",     "c4-sample",       "c4",         "ptb",         "piqa",       "arc_easy",
    "arc_challenge", "hellaswag",       "winogrande", "avg",         "kld",        "bits_per_weight",
    "paper_bits",    "mmlu_humanities", "mmlu_stem",  "mmlu_social", "mmlu_other", "mmlu_avg"};

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::vector<std::string> value_ids(const std::vector<ModelSection>& sections) {
  std::vector<std::string> ids(std::begin(kCsvFixed), std::end(kCsvFixed));
  std::set<std::string> extra;
  bool finetune = false;
  for (const auto& s : sections) {
    for (const auto& c : s.columns)
      if (c.id.find(':') != std::string::npos) extra.insert(c.id);
    finetune = finetune || s.has_finetune;
  }
  // Fine-tune rows' training outcome, only where there are any (other reports keep their columns).
  if (finetune) ids.insert(ids.end(), {"finetune_steps", "finetune_tokens", "finetune_loss"});
  ids.insert(ids.end(), extra.begin(), extra.end());
  return ids;
}

Json json_number(double v) {
  if (std::isfinite(v)) return v;
  return format_full(v);  // JSON has no inf/nan
}

}  // namespace

std::string render_csv(const std::vector<ModelSection>& sections) {
  std::vector<std::string> ids = value_ids(sections);
  std::string out = "model,method,wbits,abits,group";
  for (const auto& id : ids) out += "," + csv_field(id);
  out += ",row\n";
  for (const auto& s : sections) {
    for (const auto& r : s.rows) {
      auto raw = [&](const char* k) {
        auto it = r.settings.find(k);
        return it == r.settings.end() ? std::string() : json_scalar(*it);
      };
      out += csv_field(s.model) + "," + csv_field(r.label) + "," + csv_field(raw("wbits")) + "," +
             csv_field(raw("abits")) + "," + csv_field(raw("group"));
      for (const auto& id : ids) {
        const double* v = r.find(id);
        out += ',';
        if (v) out += format_full(*v);
      }
      out += "," + csv_field(r.settings.dump()) + "\n";
    }
  }
  return out;
}

Json render_json(const std::string& title, const std::vector<ModelSection>& sections) {
  Json models = Json::array();
  for (const auto& s : sections) {
    Json rows = Json::array();
    for (const auto& r : s.rows) {
      Json values = Json::object();
      for (const auto& [id, v] : r.values) values[id] = json_number(v);
      Json row = {{"row", r.settings}, {"label", r.label}, {"values", values}};
      if (!r.finetune_data.empty()) row["finetune_data"] = r.finetune_data;
      rows.push_back(std::move(row));
    }
    models.push_back({{"model", s.model},
                      {"model_hash", s.model_hash},
                      {"model_info", s.model_info},
                      {"lowbit_versions", s.lowbit_versions},
                      {"rows", rows}});
  }
  return {{"title", title}, {"lowbit_version", LOWBIT_VERSION}, {"models", models}};
}

}  // namespace report_detail

namespace {

std::vector<std::string> info_lines(const ModelSection& s) {
  std::vector<std::string> info = {"model hash `" + s.model_hash + "`"};
  if (s.model_info.is_object() && !s.model_info.empty()) {
    // The usual order of a model card first, anything else after.
    const std::vector<std::string> known = {"n_params",  "n_layer", "n_embd", "n_head",
                                            "n_kv_head", "n_ff",    "n_vocab"};
    std::string shape;
    auto add = [&](const std::string& k, const Json& v) {
      shape += (shape.empty() ? "" : ", ") + k + " " + json_scalar(v);
    };
    for (const auto& k : known)
      if (s.model_info.contains(k)) add(k, s.model_info[k]);
    for (auto it = s.model_info.begin(); it != s.model_info.end(); ++it)
      if (std::find(known.begin(), known.end(), it.key()) == known.end()) add(it.key(), *it);
    info.push_back(shape);
  }
  return info;
}

}  // namespace

ReportFiles render_report(const std::vector<CellRecord>& cells, const ReportOptions& opt) {
  std::vector<ModelSection> sections = group_cells(cells);
  std::vector<DisplaySection> shown;
  for (const auto& s : sections) {
    DisplaySection d{s.heading, info_lines(s), section_tables(s)};
    if (!opt.paper_dir.empty() && is_llama3_8b(s.model_info))
      d.tables = with_published(std::move(d.tables), published_tables(s, opt.paper_dir));
    shown.push_back(std::move(d));
  }
  ReportFiles f;
  f.markdown = render_markdown(opt.title, shown);
  f.csv = render_csv(sections);
  f.json = render_json(opt.title, sections);
  Plots p = render_plots(sections);
  f.svg_ppl = p.ppl;
  f.svg_acc = p.acc;
  f.svg_kld = p.kld;
  f.html = render_html(opt.title, shown, p, cells);
  return f;
}

void write_report(const ReportFiles& f, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir))
    fail("{}: cannot create report directory: {}", dir, ec.message());
  write_file_atomic(dir + "/report.md", f.markdown);
  write_file_atomic(dir + "/report.csv", f.csv);
  write_file_atomic(dir + "/report.json", f.json.dump(2) + "\n");
  write_file_atomic(dir + "/ppl_vs_bits.svg", f.svg_ppl);
  write_file_atomic(dir + "/acc_vs_bits.svg", f.svg_acc);
  write_file_atomic(dir + "/kld_vs_bits.svg", f.svg_kld);
  write_file_atomic(dir + "/report.html", f.html);
}

}  // namespace lowbit

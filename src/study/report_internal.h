// Pieces shared by the report's renderers (report*.cpp) and its tests; not part of the public API.
#pragma once
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/json.h"
#include "study/record.h"

namespace lowbit::report_detail {

// What a value column holds, which decides its display format.
enum class Kind { kPpl, kAcc, kKld, kBits };

struct Column {
  std::string id;      // CSV/JSON name: "wikitext2", "piqa", "avg", "kld", "bits_per_weight", ...
  std::string header;  // table header: "Wiki2", "PIQA", ...
  Kind kind;
};

// The five zero-shot tasks of the paper's table, in its column order; Avg is their mean.
extern const std::vector<Column> kZeroShot;

struct ReportRow {
  Json settings;      // the CellRecord::row
  std::string label;  // "GPTQ (act-order)"
  int64_t first_seq = 0;
  std::map<std::string, double> values;  // column id -> value in the store's units; absent = not measured
  std::string finetune_data;             // a fine-tune row's data file as the study named it (its provenance)
  const double* find(const std::string& id) const {
    auto it = values.find(id);
    return it == values.end() ? nullptr : &it->second;
  }
};

struct ModelSection {
  std::string model, model_hash;
  std::string heading;  // model name, with a hash prefix when two sections share a name
  Json model_info;
  std::vector<ReportRow> rows;  // by first appearance
  std::vector<Column> columns;  // the main table's value columns, after Method | #W | #A | #G
  bool c4_sample_note = false;  // a "C4" column holds c4-sample
  bool has_mmlu = false;
  bool has_finetune = false;  // a fine-tune row (lora, qlora, ir-qlora): the LoRA fine-tuning table
  std::vector<std::string> lowbit_versions;
};

// Grouping of cells into sections and rows (see report.h for the rules). Throws Error naming the cell when a
// record is malformed (row not an object, no method, a metric that is not a number).
std::vector<ModelSection> group_cells(const std::vector<CellRecord>& cells);

// A table ready to print as Markdown or HTML.
struct DisplayTable {
  std::string id;     // "main", "mmlu", "lora_ft", "published_ptq", "published_lora", "" (a note)
  std::string title;  // empty: the section's main table
  std::vector<std::string> header;
  std::vector<bool> numeric;  // right-aligned columns
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> notes;  // printed under the table
};

// The section's own tables: the main one, MMLU (rows with MMLU that the LoRA table does not show), and the
// LoRA fine-tuning table when the section has a fine-tune row.
std::vector<DisplayTable> section_tables(const ModelSection& s);
// The rows of the LoRA fine-tuning table (Huang et al. 2024, Table 2): FP16, NormalFloat (nf4 rows with float
// activations) and the fine-tune rows.
bool in_lora_table(const ReportRow& r);
bool is_finetune_row(const ReportRow& r);
// The paper's published rows for a LLaMA-3-8B-shaped section (Table 1, and Table 2 when the section has MMLU
// or fine-tune rows), or a one-note table saying why one is not shown. Throws Error("<file>:<line>: ...") for
// a malformed CSV.
std::vector<DisplayTable> published_tables(const ModelSection& s, const std::string& paper_dir);
// The section's tables with the published ones beside their own: Table 1 after the main (and MMLU) tables,
// Table 2 right after the LoRA fine-tuning table.
std::vector<DisplayTable> with_published(std::vector<DisplayTable> own, std::vector<DisplayTable> published);
bool is_llama3_8b(const Json& model_info);

// Formatting. Perplexity: 2 decimals below 1000, else the paper's "1.9E3"; "inf"/"nan" for non-finite.
std::string format_ppl(double v);
std::string format_pct(double fraction);  // 0.7712 -> "77.1"
std::string format_kld(double v);
std::string format_bits(double v);
std::string format_sci(double v);        // "2.7E6", "5.3E-5"
std::string format_full(double v);       // shortest round-trip text; "inf", "-inf", "nan"
std::string json_scalar(const Json& j);  // 4 -> "4", "gptq" -> "gptq"
std::string method_label(const Json& row);
std::string group_text(const Json& row);  // "128", "-" for per channel
std::string xml_escape(std::string_view s);

// Series colours, in assignment order.
extern const std::vector<std::string> kPalette;

struct Plots {
  std::string ppl, acc, kld;  // standalone SVG documents
};
Plots render_plots(const std::vector<ModelSection>& sections);

std::string render_csv(const std::vector<ModelSection>& sections);
Json render_json(const std::string& title, const std::vector<ModelSection>& sections);

struct DisplaySection {
  std::string heading;
  std::vector<std::string> info;  // lines under the heading
  std::vector<DisplayTable> tables;
};
std::string render_markdown(const std::string& title, const std::vector<DisplaySection>& sections);
std::string render_html(const std::string& title, const std::vector<DisplaySection>& sections,
                        const Plots& plots, const std::vector<CellRecord>& cells);

}  // namespace lowbit::report_detail

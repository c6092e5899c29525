// `lowbit report`: a study's cells rendered in the layout of Huang et al. 2024 ("How Good Are Low-bit
// Quantized LLaMA3 Models? An Empirical Study", arXiv 2404.14047, Table 1): Markdown and HTML tables, CSV and
// JSON for machines, SVG plots, and one self-contained HTML page.
//
// Rows are grouped by (model, row settings) and ordered by first appearance (smallest CellRecord::seq); one
// section per model. When the same (model, row, column) was measured twice, the latest record (largest seq)
// wins. CSV and JSON keep full precision and the store's units: accuracies are fractions in [0, 1];
// non-finite values are "inf"/"nan" (strings in JSON); a missing value is an empty CSV field or an absent
// JSON key.
#pragma once
#include <string>
#include <vector>

#include "core/json.h"
#include "study/record.h"

namespace lowbit {

struct ReportOptions {
  std::string title = "lowbit study";
  // Directory with llama3-8b-ptq.csv and llama3-8b-lora-ft.csv (shared/paper); empty = no published rows.
  std::string paper_dir;
};

struct ReportFiles {
  std::string markdown, csv;
  Json json;
  std::string svg_ppl, svg_acc, svg_kld, html;
};

ReportFiles render_report(const std::vector<CellRecord>& cells, const ReportOptions& opt);

// Writes report.md, report.csv, report.json, ppl_vs_bits.svg, acc_vs_bits.svg, kld_vs_bits.svg and
// report.html into dir (created when missing), each atomically.
void write_report(const ReportFiles& f, const std::string& dir);

}  // namespace lowbit

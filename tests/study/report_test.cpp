// Report rendering from hand-built CellRecords: table text, number formats, CSV/JSON round trips, SVG
// structure, the paper's published rows for a LLaMA-3-8B-shaped model.
#include "study/report.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <regex>

#include "core/error.h"
#include "core/mmap.h"
#include "study/report_internal.h"
#include "test_util.h"

namespace lowbit {

using namespace report_detail;

namespace {

const Json kTinyInfo = {{"n_layer", 2}, {"n_embd", 64}, {"n_vocab", 512}, {"n_kv_head", 2}, {"n_ff", 128}};
const Json kLlama3Info = {{"n_layer", 32},  {"n_embd", 4096}, {"n_vocab", 128256},       {"n_head", 32},
                          {"n_kv_head", 8}, {"n_ff", 14336},  {"n_params", 8030261248LL}};

Json row(const std::string& method, int wbits, int group, Json extra = Json::object()) {
  Json r = {{"method", method}, {"wbits", wbits}, {"abits", 16}, {"group", group}};
  r.update(extra);
  return r;
}
const Json kFp16 = row("fp16", 16, -1);

CellRecord cell(int64_t seq, const Json& r, const std::string& column, const Json& metrics,
                const std::string& model = "tiny", const Json& info = kTinyInfo) {
  CellRecord c;
  c.key = "k" + std::to_string(seq);
  c.model = model;
  c.model_hash = "hash-" + model;
  c.model_info = info;
  c.row = r;
  c.column = column;
  c.params = Json::object();
  c.metrics = metrics;
  c.provenance = {{"data", {{"file", "wikitext-2-raw/wiki.test.raw"}, {"sha256", "173c87a5"}}}, {"seed", 0}};
  c.lowbit_version = "0.1.0";
  c.seq = seq;
  return c;
}

// Five zero-shot cells for a row.
void tasks(std::vector<CellRecord>& cells, int64_t& seq, const Json& r, std::vector<double> acc,
           const std::string& model = "tiny", const Json& info = kTinyInfo) {
  const char* names[] = {"piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande"};
  for (size_t i = 0; i < acc.size(); ++i)
    cells.push_back(cell(seq++, r, std::string("task:") + names[i], {{"acc", acc[i]}}, model, info));
}

// The cells of a Markdown table line, trimmed: "| a | b |" -> {"a", "b"}.
std::vector<std::string> md_cells(const std::string& line) {
  std::vector<std::string> out;
  size_t p = line.find('|');
  while (p != std::string::npos) {
    size_t q = line.find('|', p + 1);
    if (q == std::string::npos) break;
    std::string c = line.substr(p + 1, q - p - 1);
    size_t a = c.find_first_not_of(' '), b = c.find_last_not_of(' ');
    out.push_back(a == std::string::npos ? "" : c.substr(a, b - a + 1));
    p = q;
  }
  return out;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  size_t p = 0;
  while (p < s.size()) {
    size_t e = s.find('\n', p);
    if (e == std::string::npos) e = s.size();
    out.push_back(s.substr(p, e - p));
    p = e + 1;
  }
  return out;
}

// Table rows (cells) of the Markdown whose first cell is `method`, in order.
std::vector<std::vector<std::string>> md_rows(const std::string& md, const std::string& method) {
  std::vector<std::vector<std::string>> out;
  for (const auto& l : lines_of(md))
    if (l.rfind("|", 0) == 0) {
      auto c = md_cells(l);
      if (!c.empty() && c[0] == method) out.push_back(c);
    }
  return out;
}

size_t count(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) ++n;
  return n;
}

// RFC 4180 reader, written independently of the report's writer (fields may hold commas, quotes, newlines).
std::vector<std::vector<std::string>> parse_csv(const std::string& s) {
  std::vector<std::vector<std::string>> rows(1);
  std::string f;
  bool quoted = false, field_started = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quoted) {
      if (c == '"' && i + 1 < s.size() && s[i + 1] == '"') {
        f += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        f += c;
      }
    } else if (c == '"') {
      quoted = true;
      field_started = true;
    } else if (c == ',') {
      rows.back().push_back(f);
      f.clear();
    } else if (c == '\n') {
      rows.back().push_back(f);
      f.clear();
      rows.emplace_back();
      field_started = false;
    } else {
      f += c;
      field_started = true;
    }
  }
  if (field_started || !f.empty()) rows.back().push_back(f);
  if (rows.back().empty()) rows.pop_back();
  return rows;
}

// Balanced-tag check of an XML document: every start tag closed in order; comments, declarations and
// self-closing tags handled. Returns "" or what is wrong.
std::string xml_balance(const std::string& s) {
  std::vector<std::string> stack;
  size_t p = 0;
  while ((p = s.find('<', p)) != std::string::npos) {
    size_t e = s.find('>', p);
    if (e == std::string::npos) return "unterminated tag at " + std::to_string(p);
    std::string tag = s.substr(p + 1, e - p - 1);
    p = e + 1;
    if (tag.empty() || tag[0] == '!' || tag[0] == '?') continue;
    if (count(tag, "\"") % 2) return "odd quotes in <" + tag + ">";
    if (tag[0] == '/') {
      std::string name = tag.substr(1);
      if (stack.empty() || stack.back() != name) return "unexpected </" + name + ">";
      stack.pop_back();
      continue;
    }
    if (tag.back() == '/') continue;
    stack.push_back(tag.substr(0, tag.find_first_of(" \n\t")));
  }
  return stack.empty() ? "" : "unclosed <" + stack.back() + ">";
}

// Every coordinate attribute of an SVG is a finite number.
void expect_finite_coordinates(const std::string& svg) {
  std::regex attr(R"re(\s(x|y|x1|y1|x2|y2|cx|cy|r|width|height)="([^"]*)")re");
  size_t n = 0;
  for (std::sregex_iterator it(svg.begin(), svg.end(), attr), end; it != end; ++it, ++n) {
    std::string v = (*it)[2];
    char* endp = nullptr;
    double d = std::strtod(v.c_str(), &endp);
    EXPECT_TRUE(*endp == '\0' && std::isfinite(d)) << (*it)[0];
  }
  EXPECT_GT(n, 10u);
  std::regex points(R"re(points="([^"]*)")re");
  for (std::sregex_iterator it(svg.begin(), svg.end(), points), end; it != end; ++it) {
    std::string v = (*it)[1];
    for (char& c : v)
      if (c == ',') c = ' ';
    std::istringstream in(v);
    std::string tok;
    while (in >> tok) {
      char* endp = nullptr;
      double d = std::strtod(tok.c_str(), &endp);
      EXPECT_TRUE(*endp == '\0' && std::isfinite(d)) << tok;
    }
  }
}

std::string paper_dir() {
  return test::paths().refs_dir + "/../paper";
}

}  // namespace

TEST(ReportFormat, PerplexityLikeThePaper) {
  EXPECT_EQ(format_ppl(6.1234), "6.12");
  EXPECT_EQ(format_ppl(27.899), "27.90");
  EXPECT_EQ(format_ppl(999.994), "999.99");
  EXPECT_EQ(format_ppl(999.996), "1.0E3");  // would print as 1000.00
  EXPECT_EQ(format_ppl(1934.2), "1.9E3");
  EXPECT_EQ(format_ppl(2.74e6), "2.7E6");
  EXPECT_EQ(format_ppl(9960), "1.0E4");  // mantissa rounding carries into the exponent
  EXPECT_EQ(format_ppl(5.7e4), "5.7E4");
  EXPECT_EQ(format_ppl(1.23e30), "1.2E30");
  EXPECT_EQ(format_ppl(HUGE_VAL), "inf");
  EXPECT_EQ(format_ppl(std::nan("")), "nan");
  EXPECT_EQ(format_sci(5.3e-5), "5.3E-5");
  EXPECT_EQ(format_pct(0.7712), "77.1");
  EXPECT_EQ(format_pct(0.66), "66.0");
  EXPECT_EQ(format_kld(0.01234), "0.0123");
  EXPECT_EQ(format_kld(0.00004), "4.0E-5");
  EXPECT_EQ(format_bits(4.25), "4.25");
}

TEST(ReportFormat, MethodNames) {
  EXPECT_EQ(method_label(kFp16), "FP16");
  EXPECT_EQ(method_label(row("rtn", 4, 128)), "RTN");
  EXPECT_EQ(method_label(row("gptq", 4, 128, {{"act_order", true}})), "GPTQ (act-order)");
  EXPECT_EQ(method_label(row("gptq", 4, 128, {{"act_order", false}})), "GPTQ");
  EXPECT_EQ(method_label(row("awq", 3, -1)), "AWQ");
  EXPECT_EQ(method_label(row("quip", 2, -1)), "QuIP");
  EXPECT_EQ(method_label(row("rtn", 4, 128, {{"sym", false}})), "RTN (sym=false)");
  EXPECT_EQ(group_text(row("rtn", 4, -1)), "-");
  EXPECT_EQ(group_text(row("rtn", 4, 64)), "64");
}

TEST(ReportTable, ExactTextOfASmallTable) {
  std::vector<CellRecord> cells = {
      cell(1, kFp16, "ppl:wikitext2", {{"ppl", 6.1234}}),
      cell(2, row("rtn", 2, -1), "ppl:wikitext2", {{"ppl", 1934.2}, {"kld_mean", 2.5}}),
      cell(3, row("rtn", 2, -1), "quant", {{"bits_per_weight", 2.0634}})};
  ReportFiles f = render_report(cells, {});
  const std::string expected =
      "| Method |  #W |  #A |  #G | Wiki2 |  C4 | PTB | PIQA | ARC-e | ARC-c | HellaS | Wino | Avg |    KLD "
      "| bits/w (paper) | bits/w (stored) |\n"
      "| ------ | --: | --: | --: | ----: | --: | --: | ---: | ----: | ----: | -----: | ---: | --: | -----: "
      "| -------------: | --------------: |\n"
      "| FP16   |  16 |  16 |   - |  6.12 |   - |   - |    - |     - |     - |      - |    - |   - |      - "
      "|          16.00 |           16.00 |\n"
      "| RTN    |   2 |  16 |   - | 1.9E3 |   - |   - |    - |     - |     - |      - |    - |   - | 2.5000 "
      "|           2.00 |            2.06 |\n";
  EXPECT_NE(f.markdown.find(expected), std::string::npos) << f.markdown;
  EXPECT_EQ(f.markdown.find("c4-sample"), std::string::npos);  // no C4 note without c4-sample cells
  EXPECT_EQ(f.markdown.find("MMLU"), std::string::npos);
}

TEST(ReportTable, RowsOrderAvgAndMissingCells) {
  // Cells arrive out of order; rows are ordered by their smallest seq.
  std::vector<CellRecord> cells;
  int64_t seq = 10;
  Json gptq = row("gptq", 3, 128, {{"act_order", true}});
  Json awq = row("awq", 4, -1);
  tasks(cells, seq, gptq, {0.75, 0.70, 0.40, 0.55, 0.68});  // seq 10..14
  cells.push_back(cell(3, kFp16, "ppl:wikitext2", {{"ppl", 6.1}}));
  tasks(cells, seq, kFp16, {0.80, 0.80, 0.50, 0.60, 0.73});
  cells.push_back(cell(5, awq, "ppl:wikitext2", {{"ppl", 8.54321}, {"kld_mean", 0.0456}}));
  cells.push_back(cell(6, awq, "ppl:c4-sample", {{"ppl", 12.0}}));
  tasks(cells, seq, awq, {0.70, 0.65, 0.40, 0.50});  // no winogrande: Avg "-"
  cells.push_back(cell(7, awq, "quant", {{"bits_per_weight", 4.127}}));
  cells.push_back(cell(8, gptq, "ppl:ptb", {{"ppl", 2.7e6}}));
  // A later record of the same column replaces the earlier one.
  cells.push_back(cell(40, awq, "ppl:c4-sample", {{"ppl", 13.256}}));
  std::swap(cells[0], cells[cells.size() - 3]);

  ReportFiles f = render_report(cells, {});
  std::vector<std::string> order;
  for (const auto& l : lines_of(f.markdown)) {
    auto c = md_cells(l);
    if (c.size() > 3 && c[1] != "#W" && c[1].find('-') == std::string::npos) order.push_back(c[0]);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"FP16", "AWQ", "GPTQ (act-order)"}));

  auto fp = md_rows(f.markdown, "FP16");
  ASSERT_EQ(fp.size(), 1u);
  // Method #W #A #G Wiki2 C4 PTB PIQA ARC-e ARC-c HellaS Wino Avg KLD bits/w (paper, stored);
  // (80+80+50+60+73)/5 = 68.6
  EXPECT_EQ(fp[0], (std::vector<std::string>{"FP16", "16", "16", "-", "6.10", "-", "-", "80.0", "80.0",
                                             "50.0", "60.0", "73.0", "68.6", "-", "16.00", "16.00"}));
  auto aw = md_rows(f.markdown, "AWQ");
  ASSERT_EQ(aw.size(), 1u);
  EXPECT_EQ(aw[0], (std::vector<std::string>{"AWQ", "4", "16", "-", "8.54", "13.26", "-", "70.0", "65.0",
                                             "40.0", "50.0", "-", "-", "0.0456", "4.00", "4.13"}));
  auto gp = md_rows(f.markdown, "GPTQ (act-order)");
  ASSERT_EQ(gp.size(), 1u);
  // (75+70+40+55+68)/5 = 61.6
  EXPECT_EQ(gp[0], (std::vector<std::string>{"GPTQ (act-order)", "3", "16", "128", "-", "-", "2.7E6", "75.0",
                                             "70.0", "40.0", "55.0", "68.0", "61.6", "-", "-", "-"}));
  EXPECT_NE(f.markdown.find("C4 = the 300-document c4-sample, not the official validation shard"),
            std::string::npos);
}

TEST(ReportTable, MmluTableAndOfficialC4Column) {
  Json rtn = row("rtn", 4, 128);
  std::vector<CellRecord> cells = {
      cell(1, kFp16, "mmlu",
           {{"acc", 0.648},
            {"humanities", 0.59},
            {"stem", 0.553},
            {"social_sciences", 0.76},
            {"other", 0.715}}),
      cell(2, rtn, "ppl:c4", {{"ppl", 13.4}}),
      cell(3, rtn, "ppl:c4-sample", {{"ppl", 14.5}}),
      cell(4, rtn, "task:lambada", {{"acc", 0.5}}),
  };
  ReportFiles f = render_report(cells, {});
  auto fp = md_rows(f.markdown, "FP16");
  ASSERT_EQ(fp.size(), 2u);  // main table and MMLU table
  EXPECT_EQ(fp[1],
            (std::vector<std::string>{"FP16", "16", "16", "-", "59.0", "55.3", "76.0", "71.5", "64.8"}));
  auto rt = md_rows(f.markdown, "RTN");
  ASSERT_EQ(rt.size(), 1u);  // no MMLU cell: not in the MMLU table
  // Official C4 in "C4", the sample beside it; an extra task gets its own column.
  EXPECT_NE(f.markdown.find("| Wiki2 |    C4 | C4 sample |"), std::string::npos) << f.markdown;
  EXPECT_EQ(rt[0][5], "13.40");
  EXPECT_EQ(rt[0][6], "14.50");
  EXPECT_EQ(rt[0].back(), "50.0");
  EXPECT_NE(f.markdown.find("| lambada |"), std::string::npos);
}

TEST(ReportCsv, ParsesBackAtFullPrecision) {
  Json gptq = row("gptq", 4, 128, {{"act_order", true}});
  const double ppl = 6.123456789012345, kld = 0.0123456789;
  std::vector<CellRecord> cells = {
      cell(1, gptq, "ppl:wikitext2", {{"ppl", ppl}, {"kld_mean", kld}}, "my,\"odd\" model"),
      cell(2, gptq, "task:piqa", {{"acc", 0.771234}}, "my,\"odd\" model"),
      cell(3, row("rtn", 2, -1), "ppl:wikitext2", {{"ppl", "inf"}}, "my,\"odd\" model"),
  };
  ReportFiles f = render_report(cells, {});
  auto rows = parse_csv(f.csv);
  ASSERT_EQ(rows.size(), 3u) << f.csv;
  const auto& h = rows[0];
  auto col = [&](const std::string& name) {
    size_t i = size_t(std::find(h.begin(), h.end(), name) - h.begin());
    EXPECT_LT(i, h.size()) << name;
    return i;
  };
  std::vector<std::string> head(h.begin(), h.begin() + 8);
  EXPECT_EQ(head, (std::vector<std::string>{"model", "method", "wbits", "abits", "group", "wikitext2",
                                            "c4-sample", "c4"}));
  for (const auto& r : rows) ASSERT_EQ(r.size(), h.size());
  EXPECT_EQ(rows[1][col("model")], "my,\"odd\" model");
  EXPECT_EQ(rows[1][col("method")], "GPTQ (act-order)");
  EXPECT_EQ(rows[1][col("group")], "128");
  EXPECT_EQ(std::stod(rows[1][col("wikitext2")]), ppl);
  EXPECT_EQ(std::stod(rows[1][col("kld")]), kld);
  EXPECT_EQ(std::stod(rows[1][col("piqa")]), 0.771234);
  EXPECT_EQ(rows[1][col("ptb")], "");
  EXPECT_EQ(rows[1][col("avg")], "");
  EXPECT_EQ(parse_json_text(rows[1][col("row")], "csv row"), gptq);
  EXPECT_EQ(rows[2][col("wikitext2")], "inf");
  EXPECT_EQ(rows[2][col("group")], "-1");
}

TEST(ReportJson, ValuesAtFullPrecision) {
  const double ppl = 7.000000000000001;
  std::vector<CellRecord> cells = {cell(1, row("awq", 3, 128), "ppl:wikitext2", {{"ppl", ppl}}),
                                   cell(2, row("awq", 3, 128), "quant", {{"bits_per_weight", 3.25}}),
                                   cell(3, row("rtn", 2, 128), "ppl:wikitext2", {{"ppl", "nan"}})};
  ReportFiles f = render_report(cells, {});
  const Json& m = f.json["models"].at(0);
  EXPECT_EQ(m["model"], "tiny");
  EXPECT_EQ(m["model_hash"], "hash-tiny");
  ASSERT_EQ(m["rows"].size(), 2u);
  EXPECT_EQ(m["rows"][0]["row"], row("awq", 3, 128));
  EXPECT_EQ(m["rows"][0]["values"]["wikitext2"].get<double>(), ppl);
  EXPECT_EQ(m["rows"][0]["values"]["bits_per_weight"].get<double>(), 3.25);
  EXPECT_FALSE(m["rows"][0]["values"].contains("piqa"));
  EXPECT_EQ(m["rows"][1]["values"]["wikitext2"], "nan");
  // Written as it was rendered, and parseable.
  std::string dir = test::temp_dir("report") + "/a/b";
  write_report(f, dir);
  EXPECT_EQ(parse_json_file(dir + "/report.json"), f.json);
  for (const char* name :
       {"report.md", "report.csv", "ppl_vs_bits.svg", "acc_vs_bits.svg", "kld_vs_bits.svg", "report.html"})
    EXPECT_TRUE(path_exists(dir + "/" + name)) << name;
  EXPECT_EQ(read_file(dir + "/report.md"), f.markdown);
}

TEST(ReportSvg, OnePolylinePerSeriesInItsPaletteColour) {
  std::vector<CellRecord> cells;
  int64_t seq = 1;
  cells.push_back(cell(seq++, kFp16, "ppl:wikitext2", {{"ppl", 6.1}}));
  tasks(cells, seq, kFp16, {0.8, 0.8, 0.5, 0.6, 0.73});
  const char* methods[] = {"rtn", "gptq", "awq"};
  for (int m = 0; m < 3; ++m)
    for (int bits : {2, 3, 4}) {
      Json r = row(methods[m], bits, 128);
      double ppl = 6.5 * std::pow(3.0, 4 - bits) * (1 + m);
      cells.push_back(
          cell(seq++, r, "ppl:wikitext2", {{"ppl", ppl}, {"kld_mean", 0.01 * (5 - bits) * (m + 1)}}));
      tasks(cells, seq, r, {0.5 + 0.05 * bits, 0.5, 0.3, 0.4, 0.5});
    }
  cells.push_back(
      cell(seq++, row("rtn", 4, -1), "ppl:wikitext2", {{"ppl", 9.0}}));  // "RTN per-channel", 1 point
  ReportFiles f = render_report(cells, {});
  for (const std::string* svg : {&f.svg_ppl, &f.svg_acc, &f.svg_kld}) {
    EXPECT_EQ(xml_balance(*svg), "");
    expect_finite_coordinates(*svg);
    EXPECT_EQ(svg->rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  }
  // ppl: four series (RTN g128, GPTQ g128, AWQ g128, RTN per-channel) and the FP16 reference line.
  EXPECT_EQ(count(f.svg_ppl, "<polyline"), 4u);
  for (int i = 0; i < 4; ++i)
    EXPECT_NE(f.svg_ppl.find("<polyline fill=\"none\" stroke=\"" + kPalette[i] + "\""), std::string::npos)
        << i;
  for (const char* label : {">RTN g128<", ">GPTQ g128<", ">AWQ g128<", ">RTN per-channel<", ">FP16<"})
    EXPECT_NE(f.svg_ppl.find(label), std::string::npos) << label;
  EXPECT_NE(f.svg_ppl.find("stroke-dasharray=\"6 4\""), std::string::npos);  // FP16 reference
  // Log scale: decade ticks labelled (values span 6.1 .. 175.5).
  for (const char* tick : {">10<", ">100<"}) EXPECT_NE(f.svg_ppl.find(tick), std::string::npos) << tick;
  // acc and kld: the per-channel row has neither, so three series; same colours as in the ppl plot.
  EXPECT_EQ(count(f.svg_acc, "<polyline"), 3u);
  EXPECT_EQ(count(f.svg_kld, "<polyline"), 3u);
  EXPECT_NE(f.svg_kld.find("stroke=\"" + kPalette[2] + "\""), std::string::npos);
  EXPECT_EQ(f.svg_kld.find(">FP16<"), std::string::npos);
  EXPECT_NE(f.svg_acc.find("average accuracy of 5 tasks (%)"), std::string::npos);
}

TEST(ReportSvg, DegenerateDataStillRenders) {
  // One point, inf and NaN perplexity, an all-equal accuracy, text needing escapes, partial tasks.
  Json r = row("rtn", 2, 128);
  std::vector<CellRecord> cells = {
      cell(1, r, "ppl:wikitext2", {{"ppl", 7.5}}, "a<b&c>"),
      cell(2, row("rtn", 3, 128), "ppl:wikitext2", {{"ppl", "inf"}}, "a<b&c>"),
      cell(3, row("gptq", 2, 128), "ppl:wikitext2", {{"ppl", "nan"}}, "a<b&c>"),
      cell(4, r, "task:piqa", {{"acc", 0.5}}, "a<b&c>"),
      cell(5, row("rtn", 3, 128), "task:piqa", {{"acc", 0.5}}, "a<b&c>"),
  };
  ReportFiles f = render_report(cells, {});
  for (const std::string* doc : {&f.svg_ppl, &f.svg_acc, &f.svg_kld, &f.html}) {
    EXPECT_EQ(xml_balance(*doc), "");
    EXPECT_EQ(doc->find("a<b&c>"), std::string::npos);
  }
  expect_finite_coordinates(f.svg_ppl);
  expect_finite_coordinates(f.svg_acc);
  EXPECT_NE(f.svg_ppl.find("2 value(s) not finite"), std::string::npos);
  EXPECT_EQ(count(f.svg_ppl, "<polyline"), 1u);  // RTN's one finite point
  EXPECT_NE(f.svg_acc.find("mean accuracy over the tasks present (%)"), std::string::npos);
  EXPECT_NE(f.svg_kld.find("n/a: no data"), std::string::npos);
  EXPECT_EQ(count(f.svg_kld, "<polyline"), 0u);
  // No cells at all.
  ReportFiles empty = render_report({}, {});
  EXPECT_NE(empty.svg_ppl.find("n/a: no data"), std::string::npos);
  EXPECT_EQ(xml_balance(empty.html), "");
  EXPECT_NE(empty.markdown.find("No results."), std::string::npos);
}

TEST(ReportHtml, SelfContainedWithProvenance) {
  std::vector<CellRecord> cells = {cell(1, kFp16, "ppl:wikitext2", {{"ppl", 6.1}}),
                                   cell(2, row("rtn", 4, 128), "ppl:wikitext2", {{"ppl", 8.5}})};
  cells[1].provenance = {{"calibration", {{"file", "calib/testbed-calib.txt"}, {"sha256", "abcdef12"}}},
                         {"data", {{"file", "wikitext-2-raw/wiki.test.raw"}, {"sha256", "173c87a5"}}}};
  ReportFiles f = render_report(cells, {"My <study>", ""});
  EXPECT_EQ(xml_balance(f.html), "");
  EXPECT_NE(f.html.find("<title>My &lt;study&gt;</title>"), std::string::npos);
  EXPECT_EQ(f.html.find("<script"), std::string::npos);
  EXPECT_EQ(f.html.find("http://"), std::string::npos);
  EXPECT_EQ(f.html.find("https://"), std::string::npos);
  EXPECT_EQ(count(f.html, "<svg"), 3u);
  for (const char* s : {"hash-tiny", "calibration.sha256", "abcdef12", "data.file",
                        "wikitext-2-raw/wiki.test.raw", "173c87a5", "0.1.0"})
    EXPECT_NE(f.html.find(s), std::string::npos) << s;
}

TEST(ReportSections, OneSectionPerModel) {
  std::vector<CellRecord> cells = {cell(1, kFp16, "ppl:wikitext2", {{"ppl", 6.1}}, "model-b"),
                                   cell(2, kFp16, "ppl:wikitext2", {{"ppl", 5.1}}, "model-a"),
                                   cell(3, row("rtn", 4, 128), "ppl:wikitext2", {{"ppl", 8.5}}, "model-a")};
  ReportFiles f = render_report(cells, {});
  size_t b = f.markdown.find("## model-b"), a = f.markdown.find("## model-a");
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  EXPECT_LT(b, a);
  ASSERT_EQ(f.json["models"].size(), 2u);
  EXPECT_EQ(f.json["models"][1]["rows"].size(), 2u);
  EXPECT_NE(f.svg_ppl.find(">model-a: RTN g128<"), std::string::npos);
  EXPECT_NE(f.svg_ppl.find(">model-b: FP16<"), std::string::npos);
  EXPECT_EQ(parse_csv(f.csv).size(), 4u);
}

TEST(ReportErrors, MalformedRecordsNameTheCell) {
  auto msg = [](const std::vector<CellRecord>& cells) {
    try {
      render_report(cells, {});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string m = msg({cell(1, {{"wbits", 4}}, "ppl:wikitext2", {{"ppl", 6.0}})});
  EXPECT_NE(m.find("ppl:wikitext2"), std::string::npos) << m;
  EXPECT_NE(m.find("no method"), std::string::npos) << m;
  m = msg({cell(1, kFp16, "task:piqa", {{"acc", "high"}})});
  EXPECT_NE(m.find("metric acc"), std::string::npos) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos);
  EXPECT_NE(msg({cell(1, Json::array(), "quant", Json::object())}).find("not a JSON object"),
            std::string::npos);
}

TEST(ReportPaper, PublishedRowsBesideALlama3_8bStudy) {
  ASSERT_TRUE(is_llama3_8b(kLlama3Info));
  EXPECT_FALSE(is_llama3_8b(kTinyInfo));
  std::vector<CellRecord> cells = {
      cell(1, row("gptq", 2, -1), "ppl:wikitext2", {{"ppl", 5.1e4}}, "llama3-8b", kLlama3Info),
      cell(2, kFp16, "ppl:wikitext2", {{"ppl", 6.14}}, "llama3-8b", kLlama3Info),
      cell(3, row("rtn", 4, 128), "ppl:wikitext2", {{"ppl", 8.43}}, "llama3-8b", kLlama3Info),
  };
  ReportFiles f = render_report(cells, {"s", paper_dir()});
  size_t pub = f.markdown.find("### Published (Huang et al. 2024)");
  ASSERT_NE(pub, std::string::npos) << f.markdown;
  std::string part = f.markdown.substr(pub);
  std::vector<std::vector<std::string>> rows;
  for (const auto& l : lines_of(part)) {
    if (l.rfind("|", 0) != 0) continue;
    auto c = md_cells(l);
    if (c[0] != "Method" && c[0].find("---") == std::string::npos) rows.push_back(c);
  }
  ASSERT_EQ(rows.size(), 32u);  // every row of llama3-8b-ptq.csv
  // The study's settings first, in its row order, as published (text kept, exponent upper-cased).
  EXPECT_EQ(rows[0], (std::vector<std::string>{"GPTQ", "2", "16", "-", "5.7E4", "1.0E5", "2.7E5", "52.8",
                                               "25.0", "20.5", "26.6", "49.6", "34.9"}));
  EXPECT_EQ(rows[1], (std::vector<std::string>{"FP16", "16", "16", "-", "6.1", "9.2", "10.6", "79.9", "80.1",
                                               "50.4", "60.2", "72.8", "68.6"}));
  EXPECT_EQ(rows[2][0], "RTN");
  EXPECT_EQ(rows[2][3], "128");
  EXPECT_EQ(rows[2][4], "8.5");
  EXPECT_EQ(rows[3][0], "RTN");  // then the paper's order: RTN 3-bit g128
  EXPECT_EQ(rows[3][4], "27.9");
  EXPECT_EQ(rows.back()[0], "SmoothQuant");
  EXPECT_NE(f.html.find("Published (Huang et al. 2024)"), std::string::npos);
  // No MMLU cells: no LoRA table.
  EXPECT_EQ(f.markdown.find("LoRA"), std::string::npos);

  // With MMLU, the LoRA fine-tuning table too.
  cells.push_back(cell(4, kFp16, "mmlu", {{"acc", 0.65}}, "llama3-8b", kLlama3Info));
  ReportFiles g = render_report(cells, {"s", paper_dir()});
  EXPECT_NE(g.markdown.find("Published LoRA fine-tuning, MMLU"), std::string::npos);
  EXPECT_NE(g.markdown.find("| IR-QLoRA"), std::string::npos);

  // Not a LLaMA-3-8B: no published rows.
  for (auto& c : cells) c.model_info = kTinyInfo;
  EXPECT_EQ(render_report(cells, {"s", paper_dir()}).markdown.find("Published"), std::string::npos);
}

// A fine-tune row's settings as the runner stores them (study/spec.cpp FinetuneSpec::settings, the data by
// content).
Json ft_row(const std::string& method, int64_t steps = 200) {
  return {{"method", method},
          {"wbits", method == "lora" ? 16 : 4},
          {"abits", 16},
          {"group", method == "lora" ? -1 : 64},
          {"finetune",
           {{"format", "text"},
            {"seq_len", 512},
            {"steps", steps},
            {"batch", 16},
            {"micro_batch", 4},
            {"lr", 2e-4},
            {"schedule", "constant"},
            {"warmup_ratio", 0.03},
            {"max_grad_norm", 0.3},
            {"weight_decay", 0.0},
            {"seed", 42},
            {"rank", 64},
            {"alpha", 16.0},
            {"dropout", 0.0},
            {"data_sha256", "ab12"}}}};
}

// The LoRA-FT table's cells of a row: MMLU with categories, and the five zero-shot tasks.
void lora_cells(std::vector<CellRecord>& cells, int64_t& seq, const Json& r, double base,
                const std::string& model = "tiny", const Json& info = kTinyInfo) {
  cells.push_back(cell(seq++, r, "mmlu",
                       {{"acc", base},
                        {"humanities", base - 0.01},
                        {"stem", base - 0.02},
                        {"social_sciences", base + 0.01},
                        {"other", base + 0.02}},
                       model, info));
  tasks(cells, seq, r, {base + 0.1, base + 0.1, base - 0.1, base, base + 0.05}, model, info);
}

CellRecord finetune_cell(int64_t seq, const Json& r, const std::string& model = "tiny",
                         const Json& info = kTinyInfo) {
  CellRecord c =
      cell(seq, r, "finetune",
           {{"steps", 200}, {"tokens", 1638400}, {"final_loss", 3.25}, {"first_loss", 4.5}}, model, info);
  c.provenance["finetune_data"] = "calib/testbed-calib.txt";
  return c;
}

TEST(ReportLoraTable, PaperLayoutWithFinetuneRowsAndNotes) {
  std::vector<CellRecord> cells;
  int64_t seq = 1;
  lora_cells(cells, seq, kFp16, 0.30);
  Json rtn = row("rtn", 4, 128);
  cells.push_back(cell(seq++, rtn, "mmlu", {{"acc", 0.25}, {"humanities", 0.24}}));
  Json nf4 = row("nf4", 4, 64);
  lora_cells(cells, seq, nf4, 0.28);
  Json q = ft_row("qlora"), ir = ft_row("ir-qlora");
  cells.push_back(finetune_cell(seq++, q));
  lora_cells(cells, seq, q, 0.29);
  cells.push_back(finetune_cell(seq++, ir));
  lora_cells(cells, seq, ir, 0.295);
  ReportFiles f = render_report(cells, {});
  const size_t lora = f.markdown.find("### LoRA fine-tuning (lowbit)");
  ASSERT_NE(lora, std::string::npos) << f.markdown;
  const std::string part = f.markdown.substr(lora);
  EXPECT_EQ(md_rows(part, "Method")[0],
            (std::vector<std::string>{"Method", "#W", "Hums.", "STEM", "Social", "Other", "MMLU", "PIQA",
                                      "ARC-e", "ARC-c", "HellaS", "Wino", "Avg"}));
  auto fp = md_rows(part, "FP16");
  ASSERT_EQ(fp.size(), 1u) << part;
  EXPECT_EQ(fp[0], (std::vector<std::string>{"FP16", "16", "29.0", "28.0", "31.0", "32.0", "30.0", "40.0",
                                             "40.0", "20.0", "30.0", "35.0", "33.0"}));
  auto nf = md_rows(part, "NormalFloat");
  ASSERT_EQ(nf.size(), 1u) << part;
  EXPECT_EQ(nf[0][1], "4");
  EXPECT_EQ(nf[0][6], "28.0");
  auto ql = md_rows(part, "QLoRA");
  ASSERT_EQ(ql.size(), 1u) << part;
  EXPECT_EQ(ql[0], (std::vector<std::string>{"QLoRA", "4", "28.0", "27.0", "30.0", "31.0", "29.0", "39.0",
                                             "39.0", "19.0", "29.0", "34.0", "32.0"}));
  ASSERT_EQ(md_rows(part, "IR-QLoRA").size(), 1u);
  EXPECT_TRUE(md_rows(part, "RTN").empty()) << part;  // not a row of Table 2
  // The rows in the study's order: FP16, NormalFloat, QLoRA, IR-QLoRA.
  EXPECT_LT(part.find("| FP16"), part.find("| NormalFloat"));
  EXPECT_LT(part.find("| NormalFloat"), part.find("| QLoRA"));
  EXPECT_LT(part.find("| QLoRA"), part.find("| IR-QLoRA"));
  // Notes: the data and steps used, and what the paper's numbers are.
  EXPECT_NE(
      part.find("QLoRA: 200 steps of 16 examples, 512-token windows of calib/testbed-calib.txt as plain "
                "text (the paper fine-tunes on Alpaca; this run did not)"),
      std::string::npos)
      << part;
  EXPECT_NE(part.find("final training loss 3.2500 after 1638400 tokens"), std::string::npos) << part;
  EXPECT_NE(part.find("LLaMA-3-8B LoRA-fine-tuned on Alpaca"), std::string::npos) << part;
  // The MMLU table keeps the rows the LoRA table does not show.
  const size_t mmlu = f.markdown.find("### MMLU");
  ASSERT_NE(mmlu, std::string::npos);
  const std::string mpart = f.markdown.substr(mmlu, lora - mmlu);
  EXPECT_EQ(md_rows(mpart, "RTN").size(), 1u) << mpart;
  EXPECT_TRUE(md_rows(mpart, "FP16").empty()) << mpart;
  // The main table has the fine-tune rows too, with the NF4 base's bits and block.
  auto main_q = md_rows(f.markdown.substr(0, mmlu), "QLoRA");
  ASSERT_EQ(main_q.size(), 1u);
  EXPECT_EQ(main_q[0][1], "4");
  EXPECT_EQ(main_q[0][3], "64");
  // HTML shows the table; CSV and JSON carry the training outcome.
  EXPECT_NE(f.html.find("LoRA fine-tuning (lowbit)"), std::string::npos);
  auto csv = parse_csv(f.csv);
  const auto& head = csv[0];
  const size_t loss_col = size_t(std::find(head.begin(), head.end(), "finetune_loss") - head.begin());
  ASSERT_LT(loss_col, head.size());
  bool found = false;
  for (const auto& line : csv)
    if (line[1] == "QLoRA") found = line[loss_col] == "3.25";
  EXPECT_TRUE(found) << f.csv;
  EXPECT_EQ(f.json["models"][0]["rows"][3]["values"]["finetune_steps"], 200);
  EXPECT_EQ(f.json["models"][0]["rows"][3]["finetune_data"], "calib/testbed-calib.txt");
}

TEST(ReportLoraTable, RowsThatShareALabelAreToldApartAndOtherReportsAreUnchanged) {
  std::vector<CellRecord> cells;
  int64_t seq = 1;
  lora_cells(cells, seq, ft_row("qlora", 100), 0.29);
  lora_cells(cells, seq, ft_row("qlora", 300), 0.30);
  lora_cells(cells, seq, ft_row("lora"), 0.31);
  ReportFiles f = render_report(cells, {});
  EXPECT_EQ(md_rows(f.markdown, "QLoRA (steps=100)").size(), 2u) << f.markdown;  // main and LoRA tables
  EXPECT_EQ(md_rows(f.markdown, "QLoRA (steps=300)").size(), 2u) << f.markdown;
  EXPECT_EQ(md_rows(f.markdown, "LoRA").size(), 2u) << f.markdown;
  EXPECT_EQ(f.markdown.find("### MMLU"), std::string::npos)
      << f.markdown;  // every MMLU row is in the LoRA table
  // Without a fine-tune row: no LoRA table, no fine-tune CSV columns.
  std::vector<CellRecord> plain = {cell(1, kFp16, "ppl:wikitext2", {{"ppl", 6.1}})};
  ReportFiles g = render_report(plain, {});
  EXPECT_EQ(g.markdown.find("LoRA"), std::string::npos);
  EXPECT_EQ(g.csv.find("finetune"), std::string::npos);
}

TEST(ReportLoraTable, PublishedTable2BesideOursForALlama3_8b) {
  std::vector<CellRecord> cells;
  int64_t seq = 1;
  cells.push_back(cell(seq++, kFp16, "ppl:wikitext2", {{"ppl", 6.14}}, "llama3-8b", kLlama3Info));
  lora_cells(cells, seq, kFp16, 0.6, "llama3-8b", kLlama3Info);
  cells.push_back(finetune_cell(seq++, ft_row("qlora"), "llama3-8b", kLlama3Info));
  lora_cells(cells, seq, ft_row("qlora"), 0.55, "llama3-8b", kLlama3Info);
  ReportFiles f = render_report(cells, {"s", paper_dir()});
  const size_t ptq = f.markdown.find("### Published (Huang et al. 2024)");
  const size_t ours = f.markdown.find("### LoRA fine-tuning (lowbit)");
  const size_t pub = f.markdown.find("### Published LoRA fine-tuning");
  ASSERT_NE(ptq, std::string::npos) << f.markdown;
  ASSERT_NE(ours, std::string::npos) << f.markdown;
  ASSERT_NE(pub, std::string::npos) << f.markdown;
  EXPECT_LT(ptq, ours);
  EXPECT_LT(ours, pub);
  // Nothing between our table (and its notes) and the published one.
  EXPECT_EQ(f.markdown.find("###", ours + 3), pub);
  auto ir = md_rows(f.markdown.substr(pub), "IR-QLoRA");
  ASSERT_EQ(ir.size(), 1u);
  EXPECT_EQ(ir[0][2], "52.2");
  const size_t h_ours = f.html.find("LoRA fine-tuning (lowbit)"),
               h_pub = f.html.find("Published LoRA fine-tuning");
  EXPECT_LT(h_ours, h_pub);
  EXPECT_NE(h_pub, std::string::npos);
}

TEST(ReportPaper, MalformedCsvIsAOneLineErrorNamingFileAndLine) {
  std::vector<CellRecord> cells = {cell(1, kFp16, "ppl:wikitext2", {{"ppl", 6.14}}, "l3", kLlama3Info)};
  const std::string header =
      "method,wbits,abits,group,wikitext2,c4,ptb,piqa,arc_easy,arc_challenge,hellaswag,"
      "winogrande,avg\n";
  const std::string good = "FP16,16,16,-1,6.1,9.2,10.6,79.9,80.1,50.4,60.2,72.8,68.6\n";
  struct Case {
    std::string text, expect;
  } cases[] = {
      {header + good + "RTN,4,16,128,8.5\n", "llama3-8b-ptq.csv:3: 5 fields, the header has 13"},
      {header + good + "RTN,4,16,128,8.5,abc,14.5,76.6,70.1,45.0,56.8,71.0,63.9\n",
       "llama3-8b-ptq.csv:3: c4 is 'abc', not a number"},
      {"method,wbits,abits,group,wikitext2\n" + good, "llama3-8b-ptq.csv:1: header has no column 'c4'"},
      {header + "\"FP16,16,16,-1,6.1,9.2,10.6,79.9,80.1,50.4,60.2,72.8,68.6\n",
       "llama3-8b-ptq.csv:2: malformed"},
      {header + ",16,16,-1,6.1,9.2,10.6,79.9,80.1,50.4,60.2,72.8,68.6\n",
       "llama3-8b-ptq.csv:2: empty method"},
      {"", "llama3-8b-ptq.csv:1: empty file"},
  };
  for (const auto& c : cases) {
    std::string dir = test::temp_dir("paper");
    test::write_bytes(dir + "/llama3-8b-ptq.csv", c.text);
    try {
      render_report(cells, {"s", dir});
      ADD_FAILURE() << "no error for: " << c.expect;
    } catch (const Error& e) {
      std::string m = e.what();
      EXPECT_NE(m.find(c.expect), std::string::npos) << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    }
  }
  // A missing file is said, not an error.
  std::string dir = test::temp_dir("paper-missing");
  ReportFiles f = render_report(cells, {"s", dir});
  EXPECT_NE(f.markdown.find("Not shown: " + dir + "/llama3-8b-ptq.csv not found."), std::string::npos);
  // Quoted fields and CRLF line ends are fine.
  test::write_bytes(
      dir + "/llama3-8b-ptq.csv",
      "method,wbits,abits,group,wikitext2,c4,ptb,piqa,arc_easy,arc_challenge,hellaswag,winogrande,"
      "avg\r\n\"FP16\",16,16,-1,6.1,9.2,10.6,79.9,80.1,50.4,60.2,72.8,68.6\r\n");
  f = render_report(cells, {"s", dir});
  EXPECT_NE(f.markdown.find("| FP16   |  16 |  16 |   - |   6.1 |"), std::string::npos) << f.markdown;
}

}  // namespace lowbit

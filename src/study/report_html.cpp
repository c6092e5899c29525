// The report as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched (a
// Content-Security-Policy of default-src 'none' makes the browser refuse, and log, any attempt).
#include <fmt/format.h>

#include <map>
#include <set>

#include "study/report_internal.h"

namespace lowbit::report_detail {

namespace {

const char* const kStyle = R"(
body { font-family: sans-serif; color: #222; background: #fff; margin: 12px 16px; }
h1 { font-size: 22px; margin: 4px 0 8px; }
h2 { font-size: 18px; margin: 18px 0 4px; }
h3 { font-size: 15px; margin: 12px 0 4px; }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0; }
th, td { border: 1px solid #ccc; padding: 2px 7px; }
th { background: #f2f2f2; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
p.info, p.note { font-size: 12px; color: #444; margin: 2px 0; }
.plots { display: flex; flex-wrap: wrap; gap: 8px; }
footer { font-size: 11px; color: #444; border-top: 1px solid #ccc; margin-top: 20px; padding-top: 6px; }
footer table { font-size: 11px; }
code { font-size: 11px; }
)";

// Notes and info lines are written for Markdown (`code`); the page shows them plain.
std::string strip_backticks(std::string s) {
  std::erase(s, '`');
  return s;
}

std::string table_html(const DisplayTable& t) {
  std::string h;
  if (!t.title.empty()) h += "<h3>" + xml_escape(t.title) + "</h3>\n";
  if (!t.header.empty()) {
    h += "<table>\n<tr>";
    for (const auto& c : t.header) h += "<th>" + xml_escape(c) + "</th>";
    h += "</tr>\n";
    for (const auto& r : t.rows) {
      h += "<tr>";
      for (size_t i = 0; i < r.size(); ++i)
        h +=
            (i < t.numeric.size() && t.numeric[i] ? "<td class=\"n\">" : "<td>") + xml_escape(r[i]) + "</td>";
      h += "</tr>\n";
    }
    h += "</table>\n";
  }
  for (const auto& n : t.notes) h += "<p class=\"note\">" + xml_escape(strip_backticks(n)) + "</p>\n";
  return h;
}

// The SVG documents inline: the namespace declaration is implied in HTML, and dropping it keeps the page
// free of any URL.
std::string inline_svg(std::string svg) {
  const std::string ns = " xmlns=\"http://www.w3.org/2000/svg\"";
  size_t p = svg.find(ns);
  if (p != std::string::npos) svg.erase(p, ns.size());
  return svg;
}

// Provenance is free-form JSON (data files, calibration, seed, threads, git revision): flattened to
// dotted keys, each with the distinct values seen across all cells.
void flatten(const Json& j, const std::string& key, std::map<std::string, std::set<std::string>>& out) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it)
      flatten(*it, key.empty() ? it.key() : key + "." + it.key(), out);
  } else if (j.is_array()) {
    bool scalars = true;
    for (const auto& e : j) scalars = scalars && !e.is_structured();
    if (scalars) {
      std::string v;
      for (const auto& e : j) v += (v.empty() ? "" : ", ") + json_scalar(e);
      out[key].insert(v);
    } else {
      for (const auto& e : j) {
        if (!e.is_object()) {
          out[key].insert(e.dump());
          continue;
        }
        // An array of {file, sha256} objects: one value per element, its fields kept together.
        std::string v;
        for (auto it = e.begin(); it != e.end(); ++it)
          v += (v.empty() ? "" : ", ") + it.key() + " " +
               (it->is_structured() ? it->dump() : json_scalar(*it));
        out[key].insert(v);
      }
    }
  } else if (!j.is_null()) {
    out[key].insert(json_scalar(j));
  }
}

std::string footer_html(const std::vector<CellRecord>& cells) {
  std::set<std::string> versions;
  std::map<std::string, std::set<std::string>> hashes;  // model -> hashes
  std::map<std::string, std::set<std::string>> prov;
  for (const auto& c : cells) {
    if (!c.lowbit_version.empty()) versions.insert(c.lowbit_version);
    hashes[c.model].insert(c.model_hash);
    flatten(c.provenance, "", prov);
  }
  std::string h =
      "<footer>\n<p>Rendered by lowbit " + xml_escape(LOWBIT_VERSION) + "; results computed by lowbit ";
  std::string vs;
  for (const auto& v : versions) vs += (vs.empty() ? "" : ", ") + v;
  h += xml_escape(vs.empty() ? "(unknown)" : vs) +
       ".</p>\n<table>\n<tr><th>provenance</th><th>value</th></tr>\n";
  for (const auto& [model, hs] : hashes)
    for (const auto& hash : hs)
      h +=
          "<tr><td>model " + xml_escape(model) + "</td><td><code>" + xml_escape(hash) + "</code></td></tr>\n";
  constexpr size_t kMaxValues = 24;
  for (const auto& [key, values] : prov) {
    h += "<tr><td>" + xml_escape(key) + "</td><td><code>";
    size_t i = 0;
    for (const auto& v : values) {
      if (i == kMaxValues) {
        h += fmt::format("<br/>... and {} more", values.size() - kMaxValues);
        break;
      }
      h += (i++ ? "<br/>" : "") + xml_escape(v);
    }
    h += "</code></td></tr>\n";
  }
  return h + "</table>\n</footer>\n";
}

}  // namespace

std::string render_html(const std::string& title, const std::vector<DisplaySection>& sections,
                        const Plots& plots, const std::vector<CellRecord>& cells) {
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n";
  h += "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src "
       "'unsafe-inline'\"/>\n";
  h += "<title>" + xml_escape(title) + "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n";
  h += "<h1>" + xml_escape(title) + "</h1>\n";
  if (sections.empty()) h += "<p>No results.</p>\n";
  for (const auto& s : sections) {
    h += "<section>\n<h2>" + xml_escape(s.heading) + "</h2>\n";
    for (const auto& line : s.info) h += "<p class=\"info\">" + xml_escape(strip_backticks(line)) + "</p>\n";
    for (const auto& t : s.tables) h += table_html(t);
    h += "</section>\n";
  }
  h += "<h2>Plots</h2>\n<div class=\"plots\">\n" + inline_svg(plots.ppl) + inline_svg(plots.acc) +
       inline_svg(plots.kld) + "</div>\n";
  h += footer_html(cells);
  return h + "</body>\n</html>\n";
}

}  // namespace lowbit::report_detail

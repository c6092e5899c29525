// The report's three plots as hand-written, self-contained SVG: perplexity (log y), average zero-shot
// accuracy and KL divergence (log y) against weight bits, one series per method and group setting.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <optional>

#include "study/report_internal.h"

namespace lowbit::report_detail {

// Tableau 10 without its grey (kept for the reference line), plus a dark blue.
const std::vector<std::string> kPalette = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                           "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#393b79"};

namespace {

constexpr double kW = 580, kL = 66, kR = 176, kT = 40, kPh = 290, kB = 58;
constexpr double kPw = kW - kL - kR;
const char* const kText = "#222222";
const char* const kFrame = "#444444";
const char* const kGrid = "#e6e6e6";
const char* const kRef = "#666666";

struct SeriesDef {
  std::string label, colour;
  bool dashed = false;  // palette exhausted: colours repeat, dashes tell them apart
  std::vector<const ReportRow*> rows;
};
struct RefDef {
  std::string label;
  const ReportRow* row;
};

// The x of a row: the paper's bit count (PB-LLM's 1.7), which is wbits for most methods.
std::optional<double> wbits(const ReportRow& r) {
  if (const double* p = r.find("paper_bits")) return *p;
  auto it = r.settings.find("wbits");
  if (it == r.settings.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

// One series per (model, method label, group, activation bits); FP16 rows become reference lines.
void collect(const std::vector<ModelSection>& sections, std::vector<SeriesDef>& series,
             std::vector<RefDef>& refs) {
  std::map<std::string, size_t> index;
  for (const auto& s : sections) {
    std::string prefix = sections.size() > 1 ? s.heading + ": " : "";
    for (const auto& r : s.rows) {
      if (r.settings["method"] == "fp16") {
        refs.push_back({prefix + "FP16", &r});
        continue;
      }
      if (!wbits(r)) continue;
      std::string g = group_text(r.settings);
      std::string label = prefix + r.label + (g == "-" ? " per-channel" : " g" + g);
      auto a = r.settings.find("abits");
      if (a != r.settings.end() && !(a->is_number() && a->get<double>() == 16))
        label += " A" + json_scalar(*a);
      auto [it, fresh] = index.try_emplace(label, series.size());
      if (fresh) {
        size_t i = series.size();
        series.push_back({label, kPalette[i % kPalette.size()], i >= kPalette.size(), {}});
      }
      series[it->second].rows.push_back(&r);
    }
  }
}

std::string px(double v) {
  return fmt::format("{:.1f}", v);
}

struct Tick {
  double v;
  std::string label;  // empty: gridline only
};

std::string pow_label(int m, int e) {
  if (e >= 0 && e <= 3) return fmt::format("{}{}", m, std::string(size_t(e), '0'));
  if (e < 0 && e >= -3) return fmt::format("0.{}{}", std::string(size_t(-e - 1), '0'), m);
  return fmt::format("{}E{}", m, e);
}

// Decade ticks labelled, 2..9 x decade as gridlines (up to four decades); over fewer than three decades the 2
// and 5 (and, inside one decade, the 3) are labelled too.
std::vector<Tick> log_ticks(double llo, double lhi) {
  std::vector<Tick> t;
  int e0 = int(std::floor(llo)), e1 = int(std::ceil(lhi));
  int decades = e1 - e0;
  int every = std::max(1, (decades + 7) / 8);
  auto inside = [&](double lv) { return lv >= llo - 1e-9 && lv <= lhi + 1e-9; };
  int majors = 0;
  for (int e = e0; e <= e1; ++e)
    if (inside(e) && (e - e0) % every == 0) ++majors;
  for (int e = e0; e <= e1; ++e) {
    for (int m = 1; m <= 9; ++m) {
      double lv = e + std::log10(double(m));
      if (!inside(lv)) continue;
      bool label =
          m == 1 ? (e - e0) % every == 0 : (majors < 3 && (m == 2 || m == 5)) || (majors < 2 && m == 3);
      if (m == 1 || decades <= 4) t.push_back({lv, label ? pow_label(m, e) : ""});
    }
  }
  return t;
}

double nice_step(double raw) {
  double p = std::pow(10.0, std::floor(std::log10(raw)));
  double f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

std::vector<Tick> linear_ticks(double& lo, double& hi) {
  if (hi - lo < 1e-9 * std::max(1.0, std::fabs(hi))) {
    lo -= 1;
    hi += 1;
  }
  double step = nice_step((hi - lo) / 5);
  lo = std::floor(lo / step) * step;
  hi = std::ceil(hi / step) * step;
  int decimals = std::max(0, -int(std::floor(std::log10(step))));
  std::vector<Tick> t;
  long n = std::lround((hi - lo) / step);
  for (long i = 0; i <= n && i <= 100; ++i) {
    double v = lo + double(i) * step;
    t.push_back({v, fmt::format("{:.{}f}", v, decimals)});
  }
  return t;
}

struct PlotSpec {
  std::string title, ytitle;
  bool log_y;
  std::function<std::optional<double>(const ReportRow&)> value;
};

std::string plot(const PlotSpec& spec, const std::vector<SeriesDef>& defs, const std::vector<RefDef>& refs) {
  // Points of this plot; non-finite (and, on a log axis, non-positive) values are counted and left out.
  struct Drawn {
    const SeriesDef* def;
    std::vector<std::pair<double, double>> pts;  // (bits, value)
  };
  std::vector<Drawn> drawn;
  std::vector<std::pair<const RefDef*, double>> ref_vals;
  size_t dropped = 0;
  auto usable = [&](double v) { return std::isfinite(v) && (!spec.log_y || v > 0); };
  for (const auto& d : defs) {
    Drawn dr{&d, {}};
    for (const ReportRow* r : d.rows) {
      auto v = spec.value(*r);
      if (!v) continue;
      if (!usable(*v)) {
        ++dropped;
        continue;
      }
      dr.pts.push_back({*wbits(*r), *v});
    }
    std::sort(dr.pts.begin(), dr.pts.end());
    if (!dr.pts.empty()) drawn.push_back(std::move(dr));
  }
  for (const auto& r : refs) {
    auto v = spec.value(*r.row);
    if (!v) continue;
    if (usable(*v)) {
      ref_vals.push_back({&r, *v});
    } else {
      ++dropped;
    }
  }

  size_t legend_n = drawn.size() + ref_vals.size();
  double H = std::max(kT + kPh + kB, kT + 24 + 18.0 * double(legend_n));
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n",
      kW, H);
  s += "<title>" + xml_escape(spec.title) + "</title>\n";
  s += fmt::format("<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>\n", kW, H);
  s += fmt::format(
      "<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\" "
      "fill=\"{}\">{}</text>\n",
      px(kW / 2), kText, xml_escape(spec.title));
  double bottom = kT + kPh;
  auto frame = [&] {
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"{}\"/>\n", kL,
                     kT, kPw, kPh, kFrame);
  };
  auto axis_titles = [&] {
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{}\">weight bits (#W)</text>\n",
                     px(kL + kPw / 2), px(bottom + 34), kText);
    double yc = kT + kPh / 2;
    s += fmt::format(
        "<text x=\"16\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {0})\" "
        "fill=\"{1}\">{2}</text>\n",
        px(yc), kText, xml_escape(spec.ytitle));
  };
  // The note on values left out (when any), then the closing tag.
  auto finish = [&] {
    if (dropped)
      s += fmt::format(
          "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{}\">{} value(s) not finite{}: not plotted"
          "</text>\n",
          kL, px(bottom + 50), kText, dropped, spec.log_y ? " or not positive" : "");
    return s + "</svg>\n";
  };

  if (drawn.empty()) {
    frame();
    axis_titles();
    s += fmt::format(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"14\" fill=\"{}\">n/a: no data"
        "</text>\n",
        px(kL + kPw / 2), px(kT + kPh / 2), kText);
    return finish();
  }

  // x: weight bits, ticks at the bit widths present.
  std::vector<double> xs;
  for (const auto& d : drawn)
    for (const auto& p : d.pts) xs.push_back(p.first);
  std::sort(xs.begin(), xs.end());
  xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
  double xlo = xs.front(), xhi = xs.back();
  std::vector<Tick> xt;
  if (xlo == xhi) {
    xlo -= 1;
    xhi += 1;
  } else {
    double pad = 0.08 * (xhi - xlo);
    xlo -= pad;
    xhi += pad;
  }
  if (xs.size() <= 12) {
    for (double x : xs) xt.push_back({x, format_full(x)});
  } else {
    double a = xs.front(), b = xs.back();
    xt = linear_ticks(a, b);
  }
  auto X = [&](double x) { return kL + kPw * (x - xlo) / (xhi - xlo); };

  // y: log10 space for log plots, padded so points stay off the frame.
  double ylo = HUGE_VAL, yhi = -HUGE_VAL;
  auto tr = [&](double v) { return spec.log_y ? std::log10(v) : v; };
  for (const auto& d : drawn)
    for (const auto& p : d.pts) ylo = std::min(ylo, tr(p.second)), yhi = std::max(yhi, tr(p.second));
  for (const auto& r : ref_vals) ylo = std::min(ylo, tr(r.second)), yhi = std::max(yhi, tr(r.second));
  std::vector<Tick> yt;
  if (spec.log_y) {
    double pad = yhi > ylo ? std::max(0.05 * (yhi - ylo), 0.03) : 0.3;
    ylo -= pad;
    yhi += pad;
    yt = log_ticks(ylo, yhi);
  } else {
    yt = linear_ticks(ylo, yhi);
  }
  auto Y = [&](double v) { return kT + kPh * (1 - (tr(v) - ylo) / (yhi - ylo)); };
  auto Yt = [&](double tv) {
    return kT + kPh * (1 - (tv - ylo) / (yhi - ylo));
  };  // tick already in axis space

  for (const auto& t : yt) {
    double y = Yt(t.v);
    s += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\"/>\n", kL, px(y), kL + kPw,
                     px(y), kGrid);
    if (!t.label.empty())
      s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"{}\">{}</text>\n", kL - 6,
                       px(y + 4), kText, xml_escape(t.label));
  }
  for (const auto& t : xt) {
    double x = X(t.v);
    s += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\"/>\n", px(x), kT, px(x),
                     bottom, kGrid);
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{}\">{}</text>\n", px(x),
                     px(bottom + 16), kText, xml_escape(t.label));
  }
  frame();
  axis_titles();

  for (const auto& [r, v] : ref_vals) {
    s += fmt::format(
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"1.5\" "
        "stroke-dasharray=\"6 4\"/>\n",
        kL, px(Y(v)), kL + kPw, px(Y(v)), kRef);
  }
  for (const auto& d : drawn) {
    std::string pts;
    for (const auto& p : d.pts)
      pts += fmt::format("{}{:.1f},{:.1f}", pts.empty() ? "" : " ", X(p.first), Y(p.second));
    s += fmt::format(
        "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" stroke-linejoin=\"round\"{} "
        "points=\"{}\"/>\n",
        d.def->colour, d.def->dashed ? " stroke-dasharray=\"5 3\"" : "", pts);
    for (const auto& p : d.pts)
      s += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"3.5\" fill=\"{}\"/>\n", px(X(p.first)),
                       px(Y(p.second)), d.def->colour);
  }

  // Legend, right of the plot.
  double lx = kL + kPw + 14, ly = kT + 8;
  for (const auto& d : drawn) {
    s += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\"{}/>\n",
                     px(lx), px(ly), px(lx + 22), px(ly), d.def->colour,
                     d.def->dashed ? " stroke-dasharray=\"5 3\"" : "");
    s += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"3.5\" fill=\"{}\"/>\n", px(lx + 11), px(ly),
                     d.def->colour);
    s += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{}\">{}</text>\n", px(lx + 28),
                     px(ly + 4), kText, xml_escape(d.def->label));
    ly += 18;
  }
  for (const auto& [r, v] : ref_vals) {
    s += fmt::format(
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"1.5\" "
        "stroke-dasharray=\"6 4\"/>\n",
        px(lx), px(ly), px(lx + 22), px(ly), kRef);
    s += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{}\">{}</text>\n", px(lx + 28),
                     px(ly + 4), kText, xml_escape(r->label));
    ly += 18;
  }
  return finish();
}

}  // namespace

Plots render_plots(const std::vector<ModelSection>& sections) {
  std::vector<SeriesDef> series;
  std::vector<RefDef> refs;
  collect(sections, series, refs);

  // Accuracy: the five-task average where rows have all five; when none has, the mean over those present
  // (and the axis title says so).
  bool any_avg = false;
  for (const auto& s : sections)
    for (const auto& r : s.rows) any_avg = any_avg || r.find("avg");
  auto acc = [any_avg](const ReportRow& r) -> std::optional<double> {
    if (any_avg) {
      const double* v = r.find("avg");
      return v ? std::optional<double>(*v * 100) : std::nullopt;
    }
    double sum = 0;
    int n = 0;
    for (const auto& t : kZeroShot)
      if (const double* v = r.find(t.id)) sum += *v, ++n;
    return n ? std::optional<double>(sum / n * 100) : std::nullopt;
  };
  auto metric = [](const char* id) {
    return [id](const ReportRow& r) -> std::optional<double> {
      const double* v = r.find(id);
      return v ? std::optional<double>(*v) : std::nullopt;
    };
  };

  Plots p;
  p.ppl = plot({"Perplexity vs weight bits (WikiText2)", "perplexity (log scale)", true, metric("wikitext2")},
               series, refs);
  p.acc = plot(
      {"Zero-shot accuracy vs weight bits",
       any_avg ? "average accuracy of 5 tasks (%)" : "mean accuracy over the tasks present (%)", false, acc},
      series, refs);
  // KL divergence is measured against FP16, so FP16 itself has no line here.
  p.kld =
      plot({"KL divergence from FP16 vs weight bits", "mean KL divergence (log scale)", true, metric("kld")},
           series, {});
  return p;
}

}  // namespace lowbit::report_detail

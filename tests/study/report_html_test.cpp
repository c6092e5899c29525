// The HTML report and the SVG plots opened in headless Chromium (Debian's `chromium`, installed by
// scripts/setup.sh): no console errors, and each plot series' colour is present in the screenshot.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <png.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "core/mmap.h"
#include "core/paths.h"
#include "study/report.h"
#include "study/report_internal.h"
#include "test_util.h"

namespace lowbit {

using report_detail::kPalette;

namespace {

const char* const kChromium = "/usr/bin/chromium";

struct Shot {
  int exit_code = -1;
  std::string log;
  std::string png;
};

// One headless Chromium screenshot of a local file, with a fresh profile and a hard timeout. Colour
// management and device scale are pinned so colours and sizes in the PNG are the page's own.
Shot screenshot(const std::string& file, int width, int height) {
  std::string dir = test::temp_dir("chromium");
  Shot s;
  s.png = dir + "/shot.png";
  std::string log = dir + "/log.txt";
  std::string cmd = fmt::format(
      "timeout 60 {} --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars "
      "--no-first-run "
      "--force-color-profile=srgb --force-device-scale-factor=1 --window-size={},{} --enable-logging=stderr "
      "--v=0 --user-data-dir={}/profile --screenshot={} 'file://{}' >{} 2>&1 </dev/null",
      kChromium, width, height, dir, s.png, file, log);
  int st = std::system(cmd.c_str());
  s.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  s.log = path_exists(log) ? read_file(log) : "";
  return s;
}

// Chromium logs page console messages (console.error, uncaught exceptions, CSP violations) as lines with
// ":CONSOLE" (e.g. "[..:INFO:CONSOLE:2] "Uncaught ReferenceError: ...", source: file:///..."). Our pages have
// no script, so any such line is an error.
std::vector<std::string> console_lines(const std::string& log) {
  std::vector<std::string> out;
  size_t p = 0;
  while (p < log.size()) {
    size_t e = log.find('\n', p);
    if (e == std::string::npos) e = log.size();
    std::string line = log.substr(p, e - p);
    if (line.find(":CONSOLE") != std::string::npos || line.find("Uncaught") != std::string::npos)
      out.push_back(line);
    p = e + 1;
  }
  return out;
}

struct Image {
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

Image decode_png(const std::string& path) {
  Image img;
  png_image p{};
  p.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&p, path.c_str())) {
    ADD_FAILURE() << path << ": " << p.message;
    return img;
  }
  p.format = PNG_FORMAT_RGB;
  img.rgb.resize(PNG_IMAGE_SIZE(p));
  if (!png_image_finish_read(&p, nullptr, img.rgb.data(), 0, nullptr)) {
    ADD_FAILURE() << path << ": " << p.message;
    png_image_free(&p);
    return img;
  }
  img.width = p.width;
  img.height = p.height;
  return img;
}

// Pixels within `tol` per channel of "#rrggbb": the solid core of lines and markers of that colour (their
// anti-aliased edges blend with the background and are not counted).
size_t count_colour(const Image& img, const std::string& hex, int tol = 12) {
  int r = std::stoi(hex.substr(1, 2), nullptr, 16), g = std::stoi(hex.substr(3, 2), nullptr, 16),
      b = std::stoi(hex.substr(5, 2), nullptr, 16);
  size_t n = 0;
  for (size_t i = 0; i + 2 < img.rgb.size(); i += 3)
    n += std::abs(img.rgb[i] - r) <= tol && std::abs(img.rgb[i + 1] - g) <= tol &&
         std::abs(img.rgb[i + 2] - b) <= tol;
  return n;
}

// A plot's series: a 2 px polyline across the plot (~300 px) and three 7 px markers give well over 400 solid
// pixels; its legend entry alone (a 22 px line and one marker) gives under 100, so an empty plot with a
// legend would still fail.
constexpr size_t kMinSeriesPixels = 250;

CellRecord cell(int64_t seq, const Json& row, const std::string& column, const Json& metrics) {
  CellRecord c;
  c.model = "testbed-25m";
  c.model_hash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  c.model_info = {{"n_layer", 8}, {"n_embd", 384}, {"n_vocab", 32000}, {"n_kv_head", 2}, {"n_ff", 1024}};
  c.row = row;
  c.column = column;
  c.metrics = metrics;
  c.provenance = {{"data", {{"file", "wikitext-2-raw/wiki.test.raw"}, {"sha256", "173c87a53759e020"}}},
                  {"calibration", {{"file", "calib/testbed-calib.txt"}, {"sha256", "9f2b"}}}};
  c.lowbit_version = "0.1.0";
  c.seq = seq;
  return c;
}

// FP16 and three methods at 2/3/4 bits (group 128), each with perplexity, KL divergence, five tasks.
std::vector<CellRecord> study_cells() {
  std::vector<CellRecord> cells;
  int64_t seq = 1;
  const char* tasks[] = {"task:piqa", "task:arc_easy", "task:arc_challenge", "task:hellaswag",
                         "task:winogrande"};
  auto add_row = [&](const Json& row, double ppl, double kld, double acc) {
    Json m = {{"ppl", ppl}};
    if (kld > 0) m["kld_mean"] = kld;
    cells.push_back(cell(seq++, row, "ppl:wikitext2", m));
    for (int t = 0; t < 5; ++t) cells.push_back(cell(seq++, row, tasks[t], {{"acc", acc - 0.03 * t}}));
  };
  add_row({{"method", "fp16"}, {"wbits", 16}, {"abits", 16}, {"group", -1}}, 12.0, 0, 0.62);
  const char* methods[] = {"rtn", "gptq", "awq"};
  for (int m = 0; m < 3; ++m)
    for (int bits : {2, 3, 4}) {
      double ppl = 12.0 * (1 + std::pow(6.0, 4 - bits) * (3 - m) * 0.4);
      add_row({{"method", methods[m]}, {"wbits", bits}, {"abits", 16}, {"group", 128}}, ppl,
              0.02 * std::pow(5.0, 4 - bits) * (3 - m), 0.62 - 0.04 * (4 - bits) * (3 - m));
    }
  return cells;
}

// A missing browser fails the test (setup.sh installs it); it never skips.
const char* const kNoChromium =
    "/usr/bin/chromium not found: the report tests need Debian's chromium (scripts/setup.sh installs it: "
    "apt-get install chromium)";

}  // namespace

TEST(ReportChromium, HtmlOpensWithoutConsoleErrorsAndPlotsAreDrawn) {
  ASSERT_TRUE(path_exists(kChromium)) << kNoChromium;
  std::string dir = test::temp_dir("report-html");
  ReportFiles f = render_report(study_cells(), {"quick study", ""});
  write_report(f, dir);
  Shot s = screenshot(dir + "/report.html", 1200, 2400);
  ASSERT_EQ(s.exit_code, 0) << s.log;
  EXPECT_EQ(console_lines(s.log), std::vector<std::string>{}) << s.log;
  Image img = decode_png(s.png);
  ASSERT_EQ(img.width, 1200u);
  ASSERT_EQ(img.height, 2400u);
  // Three series (RTN, GPTQ, AWQ g128), each drawn in all three plots.
  for (int i = 0; i < 3; ++i) EXPECT_GE(count_colour(img, kPalette[i]), 3 * kMinSeriesPixels) << kPalette[i];
  // A palette colour no series uses is absent: the count measures the plots, not the page.
  EXPECT_LT(count_colour(img, kPalette[5]), 20u);
}

TEST(ReportChromium, EachSvgRendersItsSeries) {
  ASSERT_TRUE(path_exists(kChromium)) << kNoChromium;
  std::string dir = test::temp_dir("report-svg");
  ReportFiles f = render_report(study_cells(), {});
  write_report(f, dir);
  for (const char* name : {"ppl_vs_bits.svg", "acc_vs_bits.svg", "kld_vs_bits.svg"}) {
    Shot s = screenshot(dir + "/" + name, 640, 480);
    ASSERT_EQ(s.exit_code, 0) << name << "\n" << s.log;
    EXPECT_EQ(console_lines(s.log), std::vector<std::string>{}) << name;
    Image img = decode_png(s.png);
    for (int i = 0; i < 3; ++i)
      EXPECT_GE(count_colour(img, kPalette[i]), kMinSeriesPixels) << name << " " << i;
  }
}

// The checks above can fail: a script error is caught from the log, and a plot without data has none of the
// series colours.
TEST(ReportChromium, ChecksCatchConsoleErrorsAndEmptyPlots) {
  ASSERT_TRUE(path_exists(kChromium)) << kNoChromium;
  std::string dir = test::temp_dir("report-neg");
  test::write_bytes(dir + "/bad.html",
                    "<!DOCTYPE html><html><body><p>x</p><script>console.error('deliberate');"
                    "undefinedFunction();</script></body></html>");
  Shot bad = screenshot(dir + "/bad.html", 400, 300);
  ASSERT_EQ(bad.exit_code, 0) << bad.log;
  auto lines = console_lines(bad.log);
  ASSERT_EQ(lines.size(), 2u) << bad.log;
  EXPECT_NE(lines[1].find("Uncaught ReferenceError"), std::string::npos) << lines[1];

  // Only quantization cells: every plot is "n/a".
  std::vector<CellRecord> cells;
  for (int i = 0; i < 3; ++i)
    cells.push_back(cell(i + 1, {{"method", "rtn"}, {"wbits", 2 + i}, {"abits", 16}, {"group", 128}}, "quant",
                         {{"bits_per_weight", 2.25 + i}}));
  write_report(render_report(cells, {}), dir);
  Shot s = screenshot(dir + "/ppl_vs_bits.svg", 640, 480);
  ASSERT_EQ(s.exit_code, 0) << s.log;
  Image img = decode_png(s.png);
  EXPECT_LT(count_colour(img, kPalette[0]), kMinSeriesPixels);
}

}  // namespace lowbit

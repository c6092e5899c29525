// lowbit study [quick|paper|FILE.toml]: regenerate the study's tables for a model, resumably
// (study/runner.h); lowbit study merge: combine the stores of shards; lowbit report: render a store.
#include <fmt/format.h>

#include <filesystem>
#include <map>

#include "cli/common.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/sys.h"
#include "study/report.h"
#include "study/runner.h"
#include "study/store.h"

namespace lowbit::cli {

namespace {

std::string default_store(const std::string& study) {
  return "lowbit-results/" + study + ".sqlite";
}

void ensure_parent(const std::string& file) {
  std::error_code ec;
  const auto parent = std::filesystem::path(file).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
}

// Renders the cells (all of the store's, or one study's) into dir and prints the Markdown table.
// A study's cells are reported in its plan order (`keys`), not the store's: cells that another study stored
// earlier (the same row and column at the same settings) would otherwise put rows out of the study's order.
void report(const ResultStore& store, const std::vector<std::string>* keys, const std::string& dir,
            const std::string& title, const SearchPaths& paths) {
  std::map<std::string, int64_t> position;
  if (keys)
    for (size_t i = 0; i < keys->size(); ++i) position.emplace((*keys)[i], int64_t(i));
  std::vector<CellRecord> cells;
  for (CellRecord& c : store.cells()) {
    if (keys) {
      auto it = position.find(c.key);
      if (it == position.end()) continue;
      c.seq = it->second;  // the report lays rows out by seq (first appearance)
    }
    cells.push_back(std::move(c));
  }
  if (cells.empty()) fail("{}: no results to report", store.path());
  ReportOptions ro;
  ro.title = title;
  ro.paper_dir = paths.paper_dir;
  ReportFiles f = render_report(cells, ro);
  write_report(f, dir);
  fmt::print("{}\n", f.markdown);
  fmt::print(stderr, "report: {}/report.html (and report.md, report.csv, report.json, *.svg)\n", dir);
}

}  // namespace

void add_study(CLI::App& app, Global& g, Commands& out) {
  auto* sub = app.add_subcommand("study", "Run a study (the paper's tables) resumably into a result store");
  struct Opts {
    std::string study = "quick", store, cache_dir, report_dir, shard, print_preset;
    bool no_report = false, check = false;
    std::string merge_store;
    std::vector<std::string> merge_inputs;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("study", o->study, "A preset (quick, paper) or a study TOML file")->capture_default_str();
  sub->add_option("--store", o->store, "SQLite result store (default lowbit-results/<study name>.sqlite)");
  sub->add_option("--cache-dir", o->cache_dir, "Quantized checkpoints, by key (default <store>.cache)");
  sub->add_option("--report-dir", o->report_dir,
                  "Report output (default lowbit-results/<study name>-report)");
  sub->add_option("--shard", o->shard, "Run part i of n of the study's cells, e.g. 1/4 (see docs/study.md)");
  sub->add_flag("--no-report", o->no_report, "Do not render the report at the end");
  sub->add_flag("--check", o->check, "Validate the study and its inputs, print the plan size, and stop");
  sub->add_option("--print-preset", o->print_preset, "Print a preset's TOML (to copy and edit) and exit");

  auto* merge = sub->add_subcommand("merge", "Copy the cells of shard stores into one store");
  merge->add_option("--store", o->merge_store, "The store to merge into (created when missing)")->required();
  merge->add_option("inputs", o->merge_inputs, "Shard stores")->required()->check(CLI::ExistingFile);
  out.emplace_back(merge, [o]() {
    ensure_parent(o->merge_store);
    ResultStore into(o->merge_store);
    int64_t total = 0;
    for (const std::string& in : o->merge_inputs) {
      ResultStore from(in);
      int64_t conflicts = 0;
      const int64_t n = merge_stores(into, from, &conflicts);
      total += n;
      fmt::print(stderr, "merge: {} cells from {}{}\n", n, in,
                 conflicts ? fmt::format(" ({} cells already present with different values; kept the first)",
                                         conflicts)
                           : "");
    }
    fmt::print("merged {} cells into {}\n", total, o->merge_store);
    return 0;
  });

  out.emplace_back(sub, [&g, o]() {
    if (!o->print_preset.empty()) {
      fmt::print("{}", preset_text(o->print_preset));
      return 0;
    }
    const StudySpec spec = load_study(o->study);
    StudyOptions so;
    so.paths = g.paths();
    so.cache_dir = o->cache_dir;
    if (!o->shard.empty()) {
      int i = 0, n = 0;
      char slash = 0;
      if (std::sscanf(o->shard.c_str(), "%d%c%d", &i, &slash, &n) != 3 || slash != '/' || n < 1 || i < 1 ||
          i > n)
        fail("--shard {}: expected i/n with 1 <= i <= n, e.g. 1/4", o->shard);
      so.shard_index = i;
      so.shard_count = n;
    }
    const std::string store_path = o->store.empty() ? default_store(spec.name) : o->store;
    // Everything is checked before the store is created or any work starts.
    check_study_inputs(spec, so.paths);
    so.inputs_checked = true;
    if (o->check) {
      // The plan against the store, which --check never creates (a missing one holds nothing).
      const bool have_store = std::filesystem::exists(store_path);
      ResultStore store(have_store ? store_path : ":memory:");
      const std::vector<std::string> keys = study_keys(spec, store, so.paths);
      const StoredTally t = stored_tally(store, keys);
      fmt::print(
          "{}: {} models x {} rows, {} cells; inputs OK; {} of them stored in {}{}, taking {} in all; {} to "
          "compute\n",
          spec.source, spec.models.size(), spec.rows.size(), keys.size(), t.cells, store_path,
          have_store ? "" : " (not there yet)", format_duration(t.seconds), int64_t(keys.size()) - t.cells);
      return 0;
    }
    ensure_parent(store_path);
    ResultStore store(store_path);
    const StudySummary s = run_study(spec, store, so);
    // A study resumed across several runs took the sum of its cells' own times, not this run's wall time.
    fmt::print(stderr,
               "study {}: computed {} cells in {:.1f} s ({} were already stored); its {} stored cells took "
               "{} in all; store {}\n",
               spec.name, s.computed, s.seconds, s.already_stored, s.stored_cells,
               format_duration(s.stored_seconds), store_path);
    if (!o->no_report) {
      const std::string dir =
          o->report_dir.empty() ? "lowbit-results/" + spec.name + "-report" : o->report_dir;
      report(store, &s.plan_keys, dir, "lowbit study: " + spec.name, so.paths);
    }
    return 0;
  });
}

void add_report(CLI::App& app, Global& g, Commands& out) {
  auto* sub =
      app.add_subcommand("report", "Render a result store as Markdown, CSV, JSON, SVG plots and HTML");
  struct Opts {
    std::string store, study, dir = "lowbit-results/report", title;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("store", o->store, "SQLite result store")->required()->check(CLI::ExistingFile);
  sub->add_option("--study", o->study, "Only this study's cells (a preset or a TOML file); default all");
  sub->add_option("-o,--out", o->dir, "Output directory")->capture_default_str();
  sub->add_option("--title", o->title, "Page title");
  out.emplace_back(sub, [&g, o]() {
    ResultStore store(o->store);
    const SearchPaths paths = g.paths();
    if (o->study.empty()) {
      report(store, nullptr, o->dir, o->title.empty() ? "lowbit study" : o->title, paths);
    } else {
      const StudySpec spec = load_study(o->study);
      const std::vector<std::string> keys = study_keys(spec, store, paths);
      report(store, &keys, o->dir, o->title.empty() ? "lowbit study: " + spec.name : o->title, paths);
    }
    return 0;
  });
}

}  // namespace lowbit::cli

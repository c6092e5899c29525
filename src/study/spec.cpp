#include "study/spec.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "eval/ppl_texts.h"
#include "eval/task_registry.h"
#include "io/checkpoint.h"

namespace lowbit {

std::string StudyRow::label() const {
  if (baseline()) return "fp16";
  std::string s = fmt::format("{} w{} a{} {}", quant.method, quant.wbits, settings.value("abits", 16),
                              quant.group != kPerChannel ? fmt::format("g{}", quant.group) : "per-channel");
  for (auto& [k, v] : settings.items())
    if (k != "method" && k != "wbits" && k != "abits" && k != "group")
      s += v.is_boolean() ? (v.get<bool>() ? " " + k : " no-" + k) : fmt::format(" {}={}", k, v.dump());
  return s;
}

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// Reads one TOML table's keys, complaining about any it does not know.
class Section {
 public:
  Section(const toml::table& t, std::string where, const std::string& source, std::vector<std::string> known)
      : t_(t), where_(std::move(where)), source_(source) {
    for (auto&& [k, v] : t) {
      const std::string key(k.str());
      if (std::find(known.begin(), known.end(), key) != known.end()) continue;
      std::string best;
      size_t bd = SIZE_MAX;
      for (const auto& c : known)
        if (size_t d = edit_distance(key, c); d < bd) bd = d, best = c;
      fail("{}: {}: unknown key '{}'{} (known: {})", source_, path(key), key,
           bd <= 2 ? fmt::format(" (did you mean '{}'?)", best) : "", fmt::join(known, ", "));
    }
  }
  std::string path(const std::string& key) const {
    return where_.empty() ? key : key.empty() ? where_ : where_ + "." + key;
  }
  [[noreturn]] void bad(const std::string& key, const std::string& what) const {
    fail("{}: {}: {}", source_, path(key), what);
  }
  bool has(const std::string& key) const { return t_.contains(key); }
  const toml::node* node(const std::string& key) const { return t_.get(key); }

  int64_t integer(const std::string& key, int64_t def) const {
    const toml::node* n = node(key);
    if (!n) return def;
    if (auto v = n->value_exact<int64_t>()) return *v;
    bad(key, "expected an integer");
  }
  bool boolean(const std::string& key, bool def) const {
    const toml::node* n = node(key);
    if (!n) return def;
    if (auto v = n->value_exact<bool>()) return *v;
    bad(key, "expected true or false");
  }
  double number(const std::string& key, double def) const {
    const toml::node* n = node(key);
    if (!n) return def;
    if (auto v = n->value<double>()) return *v;
    bad(key, "expected a number");
  }
  std::string string(const std::string& key, const std::string& def) const {
    const toml::node* n = node(key);
    if (!n) return def;
    if (auto v = n->value_exact<std::string>()) return *v;
    bad(key, "expected a string");
  }
  // A scalar or an array of scalars of one type.
  template <class T>
  std::vector<T> list(const std::string& key, std::vector<T> def) const {
    const toml::node* n = node(key);
    if (!n) return def;
    std::vector<T> out;
    auto one = [&](const toml::node& e) {
      if (auto v = e.value_exact<T>()) return out.push_back(*v);
      bad(key, std::is_same_v<T, std::string> ? "expected a string or a list of strings"
                                              : "expected an integer or a list of integers");
    };
    if (const toml::array* a = n->as_array()) {
      for (const toml::node& e : *a) one(e);
      if (out.empty()) bad(key, "empty list");
    } else {
      one(*n);
    }
    return out;
  }
  const toml::table* table(const std::string& key) const {
    const toml::node* n = node(key);
    if (!n) return nullptr;
    if (const toml::table* t = n->as_table()) return t;
    bad(key, "expected a table");
  }

 private:
  const toml::table& t_;
  std::string where_;
  const std::string& source_;
};

const toml::table kEmpty;

void check_nonneg(const Section& s, const std::string& key, int64_t v) {
  if (v < 0) s.bad(key, fmt::format("{} must be >= 0", v));
}

// The spec keys of a row: its axes, then every registered method's options.
std::vector<std::string> row_keys() {
  std::vector<std::string> k{"method", "wbits", "abits", "group"};
  for (const OptionUse& u : all_method_options()) k.push_back(u.option->name);
  return k;
}

// The value of method option o in a row, typed by its schema (the settings keep the type, so store keys
// stay stable: damp is always a float, awq_seqlen an integer).
Json option_value(const Section& s, const MethodOption& o) {
  switch (o.type) {
    case OptionType::Bool:
      return s.boolean(o.name, false);
    case OptionType::Int:
      return s.integer(o.name, 0);
    case OptionType::Number:
      return s.number(o.name, 0);
    case OptionType::String:
      return s.string(o.name, "");
  }
  return nullptr;
}

std::vector<StudyRow> expand_rows(const Section& s, const std::string& where, const StudySpec& spec) {
  std::vector<std::string> methods = s.list<std::string>("method", {});
  if (methods.empty())
    s.bad("method", "missing (fp16 or one of " + fmt::format("{}", fmt::join(quant_methods(), ", ")) + ")");
  std::vector<int64_t> wbits = s.list<int64_t>("wbits", {}), abits = s.list<int64_t>("abits", {16}),
                       groups = s.list<int64_t>("group", {128});
  // The method options this row sets (each checked against each method below).
  std::vector<const MethodOption*> given;
  for (const OptionUse& u : all_method_options())
    if (s.has(u.option->name)) given.push_back(u.option);
  std::vector<StudyRow> out;
  for (const std::string& m : methods) {
    const bool fp = m == "fp16";
    if (!fp && !find_method(m))
      s.bad("method",
            fmt::format("unknown method '{}' (known: fp16, {})", m, fmt::join(quant_methods(), ", ")));
    if (fp) {
      if (methods.size() == 1) {
        for (const char* k : {"wbits", "group"})
          if (s.has(k)) s.bad(k, "does not apply to the fp16 baseline");
        for (const MethodOption* o : given) s.bad(o->name, "does not apply to the fp16 baseline");
      }
      for (int64_t a : abits)
        if (a != 16) s.bad("abits", fmt::format("abits = {}: the fp16 baseline has 16-bit activations", a));
      StudyRow r;
      r.settings = {{"method", "fp16"}, {"wbits", 16}, {"abits", 16}, {"group", -1}};
      r.quant.method = "fp16";
      r.where = where;
      out.push_back(r);
      continue;
    }
    const Method& method = *find_method(m);
    if (wbits.empty())
      s.bad("wbits", fmt::format("missing (weight bits, {}..{})", method.min_bits, method.max_bits));
    // A method with a fixed block (nf4) takes it when the row leaves the group out.
    const std::vector<int64_t> method_groups =
        !s.has("group") && method.fixed_group != 0 ? std::vector<int64_t>{method.fixed_group} : groups;
    for (int64_t w : wbits)
      for (int64_t a : abits)
        for (int64_t g : method_groups) {
          if (a != 16 && (a < 2 || a > 8))
            s.bad("abits", fmt::format("abits = {}: 16 (float activations), or 2..8 for per-token activation "
                                       "quantization",
                                       a));
          if (w < method.min_bits || w > method.max_bits)
            s.bad("wbits", fmt::format("wbits = {} is not supported by {} ({}..{})", w, m, method.min_bits,
                                       method.max_bits));
          if (g == 0 || g < kPerChannel)
            s.bad("group",
                  fmt::format("group = {}: a positive group size, or {} for per-channel", g, kPerChannel));
          StudyRow r;
          r.where = where;
          QuantConfig& q = r.quant;
          q.method = m;
          q.wbits = int(w);
          q.group = int(g);
          r.abits = int(a);
          r.settings = {{"method", m}, {"wbits", w}, {"abits", a}, {"group", g}};
          for (const MethodOption* o : given) r.settings[o->name] = q.options[o->name] = option_value(s, *o);
          q.nsamples = spec.calib_nsamples;
          q.seqlen = spec.calib_seqlen;
          q.seed = spec.calib_seed;
          q.calib_file = spec.calib_file;
          // The method's own option checks (the group is checked against each model's widths later).
          try {
            validate_quant_options(q);
          } catch (const Error& e) {
            s.bad("", e.what());
          }
          out.push_back(std::move(r));
        }
  }
  return out;
}

}  // namespace

StudySpec parse_study(const std::string& text, const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    fail("{}:{}:{}: TOML syntax error: {}", source, e.source().begin.line, e.source().begin.column,
         e.description());
  }
  StudySpec spec;
  spec.source = source;
  Section top(root, "", source, {"name", "models", "calibration", "perplexity", "tasks", "rows"});
  spec.name = top.string("name", "study");
  spec.models = top.list<std::string>("models", {});
  if (spec.models.empty()) top.bad("models", "missing (a list of model names or paths)");

  const toml::table* ct = top.table("calibration");
  Section cal(ct ? *ct : kEmpty, "calibration", source, {"file", "nsamples", "seqlen", "seed"});
  spec.calib_file = cal.string("file", spec.calib_file);
  spec.calib_nsamples = int(cal.integer("nsamples", spec.calib_nsamples));
  spec.calib_seqlen = int(cal.integer("seqlen", spec.calib_seqlen));
  const int64_t seed = cal.integer("seed", 0);
  check_nonneg(cal, "seed", seed);
  spec.calib_seed = uint64_t(seed);
  if (spec.calib_nsamples < 1) cal.bad("nsamples", "must be at least 1");
  if (spec.calib_seqlen < 2) cal.bad("seqlen", "must be at least 2");

  const toml::table* pt = top.table("perplexity");
  Section ppl(pt ? *pt : kEmpty, "perplexity", source, {"datasets", "seqlen", "max_windows", "kld"});
  spec.ppl_datasets = ppl.list<std::string>("datasets", {});
  for (const auto& d : spec.ppl_datasets)
    if (std::find(eval_text_names().begin(), eval_text_names().end(), d) == eval_text_names().end() &&
        !d.starts_with("text:"))
      ppl.bad("datasets", fmt::format("unknown dataset '{}' (known: {}, or \"text:<file>\")", d,
                                      fmt::join(eval_text_names(), ", ")));
  spec.ppl_seqlen = int(ppl.integer("seqlen", spec.ppl_seqlen));
  if (spec.ppl_seqlen < 2) ppl.bad("seqlen", "must be at least 2");
  spec.ppl_max_windows = int(ppl.integer("max_windows", 0));
  check_nonneg(ppl, "max_windows", spec.ppl_max_windows);
  spec.kld = ppl.boolean("kld", !spec.ppl_datasets.empty());
  if (spec.kld && spec.ppl_datasets.empty()) ppl.bad("kld", "needs a perplexity dataset");

  const toml::table* tt = top.table("tasks");
  Section tasks(tt ? *tt : kEmpty, "tasks", source, {"names", "limit", "mmlu_limit", "num_fewshot"});
  spec.tasks = tasks.list<std::string>("names", {});
  for (const auto& t : spec.tasks)
    if (std::find(known_tasks().begin(), known_tasks().end(), t) == known_tasks().end())
      tasks.bad("names", fmt::format("unknown task '{}' (known: {})", t, fmt::join(known_tasks(), ", ")));
  spec.task_limit = int(tasks.integer("limit", 0));
  check_nonneg(tasks, "limit", spec.task_limit);
  spec.mmlu_limit = int(tasks.integer("mmlu_limit", -1));
  if (spec.mmlu_limit < -1) tasks.bad("mmlu_limit", "must be >= 0, or -1 for limit");
  spec.num_fewshot = int(tasks.integer("num_fewshot", -1));
  if (spec.ppl_datasets.empty() && spec.tasks.empty())
    top.bad("perplexity", "the study measures nothing: give perplexity.datasets or tasks.names");

  const toml::node* rn = root.get("rows");
  const toml::array* rows = rn ? rn->as_array() : nullptr;
  if (!rows || rows->empty()) top.bad("rows", "missing: give at least one [[rows]] table");
  std::set<std::string> seen;
  for (size_t i = 0; i < rows->size(); ++i) {
    const std::string where = fmt::format("rows[{}]", i);
    const toml::table* rt = (*rows)[i].as_table();
    if (!rt) top.bad(where, "expected a table ([[rows]])");
    Section rs(*rt, where, source, row_keys());
    for (StudyRow& r : expand_rows(rs, where, spec))
      if (seen.insert(r.settings.dump()).second) spec.rows.push_back(std::move(r));
  }
  return spec;
}

StudySpec load_study(const std::string& name_or_path) {
  const auto& p = study_presets();
  if (std::find(p.begin(), p.end(), name_or_path) != p.end())
    return parse_study(preset_text(name_or_path), "preset " + name_or_path);
  std::ifstream f(name_or_path, std::ios::binary);
  if (!f) fail("{}: cannot open study file (presets: quick, paper)", name_or_path);
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_study(ss.str(), name_or_path);
}

void check_study_inputs(const StudySpec& spec, const SearchPaths& paths) {
  for (const std::string& m : spec.models) {
    const Checkpoint ck = load_checkpoint(resolve_model_path(m, paths));
    if (!ck.config.quantization_config.is_null())
      fail("{}: models: {} is already quantized; a study starts from a full-precision model", spec.source, m);
    for (const StudyRow& r : spec.rows) {
      if (r.baseline()) continue;
      try {
        validate_quant_settings(ck.config, r.quant);
      } catch (const Error& e) {
        fail("{}: {}: {}: {}", spec.source, r.where, m, e.what());
      }
    }
  }
  bool calibrated = std::any_of(spec.rows.begin(), spec.rows.end(),
                                [](const StudyRow& r) { return method_needs_calibration(r.quant.method); });
  if (calibrated) {
    try {
      resolve_data_path(spec.calib_file, paths);
    } catch (const Error& e) {
      fail("{}: calibration.file: {}", spec.source, e.what());
    }
  }
  for (const std::string& d : spec.ppl_datasets) {
    try {
      build_eval_text(d, paths);
    } catch (const Error& e) {
      fail("{}: perplexity.datasets: {}", spec.source, e.what());
    }
  }
  for (const std::string& t : spec.tasks) {
    try {
      load_task(t, paths.data_dir, 1, t == "mmlu" ? spec.num_fewshot : -1);
    } catch (const Error& e) {
      fail("{}: tasks.names: {}", spec.source, e.what());
    }
  }
}

}  // namespace lowbit

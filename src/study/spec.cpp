#include "study/spec.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/error.h"
#include "eval/ppl_texts.h"
#include "eval/task_registry.h"
#include "io/checkpoint.h"
#include "train/dbllm.h"
#include "train/qlora.h"

namespace lowbit {

Json FinetuneSpec::settings() const {
  Json j = {{"data", data},
            {"format", format},
            {"steps", opt.steps},
            {"batch", opt.batch},
            {"micro_batch", opt.micro_batch},
            {"lr", opt.lr},
            {"schedule", opt.schedule},
            {"warmup_ratio", opt.warmup_ratio},
            {"max_grad_norm", opt.max_grad_norm},
            {"weight_decay", opt.weight_decay},
            {"seed", opt.seed},
            {"rank", lora.rank},
            {"alpha", lora.alpha},
            {"dropout", lora.dropout}};
  // Only the settings of the data's format: the others do not change the examples.
  if (format == "text") {
    j["seq_len"] = seq_len;
  } else {
    j["source_max_len"] = alpaca.source_max_len;
    j["target_max_len"] = alpaca.target_max_len;
    j["train_on_source"] = alpaca.train_on_source;
  }
  return j;
}

LoraConfig FinetuneSpec::lora_config() const {
  LoraConfig c = lora;
  c.iec = method_uses_iec(method);
  c.seed = opt.seed;  // as lowbit finetune: one seed for the data order, dropout and A's initialisation
  return c;
}

std::string StudyRow::label() const {
  if (baseline()) return "fp16";
  if (finetune) return fmt::format("{} w{} {} steps", quant.method, quant.wbits, finetune->opt.steps);
  std::string s = fmt::format("{} w{} a{} {}", quant.method, quant.wbits, settings.value("abits", 16),
                              quant.group != kPerChannel ? fmt::format("g{}", quant.group) : "per-channel");
  for (auto& [k, v] : settings.items())
    if (k != "method" && k != "wbits" && k != "abits" && k != "group" && k != "finetune")
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

// The [finetune] keys (a fine-tune row may override each).
const std::vector<std::string> kFinetuneKeys = {
    "data",  "format",      "seq_len", "source_max_len", "target_max_len", "train_on_source", "steps",
    "batch", "micro_batch", "lr",      "schedule",       "warmup_ratio",   "max_grad_norm",   "weight_decay",
    "seed",  "rank",        "alpha",   "dropout",        "save_every"};

// The spec keys of a row: its axes, every registered method's options, its own task list, the fine-tune keys.
std::vector<std::string> row_keys() {
  std::vector<std::string> k{"method", "wbits", "abits", "group"};
  for (const OptionUse& u : all_method_options()) k.push_back(u.option->name);
  k.push_back("tasks");
  k.insert(k.end(), kFinetuneKeys.begin(), kFinetuneKeys.end());
  return k;
}

bool is_finetune_method(const std::string& m) {
  try {
    check_finetune_method(m);
    return true;
  } catch (const Error&) {
    return false;
  }
}

// The fine-tune settings of a table ([finetune] or a fine-tune row): the keys it gives over `def`.
FinetuneSpec read_finetune(const Section& s, FinetuneSpec f) {
  f.data = s.string("data", f.data);
  if (f.data.empty()) s.bad("data", "empty path");
  f.format = s.string("format", f.format);
  if (f.format != "text" && f.format != "alpaca")
    s.bad("format", fmt::format("'{}' is not one of text, alpaca", f.format));
  auto int_at_least = [&](const char* key, int64_t def, int64_t min) {
    const int64_t v = s.integer(key, def);
    if (v < min) s.bad(key, fmt::format("{} must be at least {}", v, min));
    if (v > INT32_MAX) s.bad(key, fmt::format("{} is too large", v));
    return v;
  };
  auto number_in = [&](const char* key, double def, double lo, double hi, bool lo_open, const char* range) {
    const double v = s.number(key, def);
    if (!(lo_open ? v > lo : v >= lo) || !(v <= hi)) s.bad(key, fmt::format("{} must be {}", v, range));
    return v;
  };
  f.seq_len = int(int_at_least("seq_len", f.seq_len, 2));
  f.alpaca.source_max_len = int(int_at_least("source_max_len", f.alpaca.source_max_len, 1));
  f.alpaca.target_max_len = int(int_at_least("target_max_len", f.alpaca.target_max_len, 1));
  f.alpaca.train_on_source = s.boolean("train_on_source", f.alpaca.train_on_source);
  FinetuneOptions& o = f.opt;
  o.steps = s.integer("steps", o.steps);
  if (o.steps < 1) s.bad("steps", fmt::format("{} must be at least 1", o.steps));
  o.batch = int(int_at_least("batch", o.batch, 1));
  o.micro_batch = int(int_at_least("micro_batch", o.micro_batch, 1));
  if (o.batch % o.micro_batch != 0)
    s.bad(s.has("micro_batch") ? "micro_batch" : "batch",
          fmt::format("batch {} must be a multiple of micro_batch {}", o.batch, o.micro_batch));
  o.lr = number_in("lr", o.lr, 0, HUGE_VAL, true, "positive");
  o.schedule = s.string("schedule", o.schedule);
  if (o.schedule != "constant" && o.schedule != "cosine")
    s.bad("schedule", fmt::format("'{}' is not one of constant, cosine", o.schedule));
  o.warmup_ratio = number_in("warmup_ratio", o.warmup_ratio, 0, 1, false, "in [0, 1]");
  o.max_grad_norm = number_in("max_grad_norm", o.max_grad_norm, 0, HUGE_VAL, false, ">= 0 (0 = no clipping)");
  o.weight_decay = number_in("weight_decay", o.weight_decay, 0, HUGE_VAL, false, ">= 0");
  const int64_t seed = s.integer("seed", int64_t(o.seed));
  check_nonneg(s, "seed", seed);
  o.seed = uint64_t(seed);
  o.save_every = s.integer("save_every", o.save_every);
  if (o.save_every < 1) s.bad("save_every", fmt::format("{} must be at least 1", o.save_every));
  f.lora.rank = int(int_at_least("rank", f.lora.rank, 1));
  f.lora.alpha = number_in("alpha", f.lora.alpha, 0, HUGE_VAL, true, "positive");
  f.lora.dropout = number_in("dropout", f.lora.dropout, 0, 1, false, "in [0, 1)");
  if (f.lora.dropout >= 1) s.bad("dropout", fmt::format("{} must be in [0, 1)", f.lora.dropout));
  return f;
}

// A row's own task list, checked as [tasks] names are.
std::vector<std::string> read_tasks(const Section& s, const std::string& key) {
  std::vector<std::string> names = s.list<std::string>(key, {});
  for (const auto& t : names)
    if (std::find(known_tasks().begin(), known_tasks().end(), t) == known_tasks().end())
      s.bad(key, fmt::format("unknown task '{}' (known: {})", t, fmt::join(known_tasks(), ", ")));
  return names;
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

std::vector<StudyRow> expand_rows(const Section& s, const std::string& where, const StudySpec& spec,
                                  const FinetuneSpec& ft_defaults) {
  std::vector<std::string> methods = s.list<std::string>("method", {});
  const std::string known = fmt::format("fp16, {}, lora, qlora, ir-qlora", fmt::join(quant_methods(), ", "));
  if (methods.empty()) s.bad("method", "missing (one of " + known + ")");
  std::vector<int64_t> wbits = s.list<int64_t>("wbits", {}), abits = s.list<int64_t>("abits", {16}),
                       groups = s.list<int64_t>("group", {128});
  // The method options this row sets (each checked against each method below).
  std::vector<const MethodOption*> given;
  for (const OptionUse& u : all_method_options())
    if (s.has(u.option->name)) given.push_back(u.option);
  std::optional<std::vector<std::string>> tasks;
  if (s.has("tasks")) tasks = read_tasks(s, "tasks");
  const bool any_ft = std::any_of(methods.begin(), methods.end(), is_finetune_method);
  if (!any_ft)
    for (const std::string& k : kFinetuneKeys)
      if (s.has(k)) s.bad(k, "applies to fine-tune rows only (method lora, qlora or ir-qlora)");
  std::vector<StudyRow> out;
  for (const std::string& m : methods) {
    const bool fp = m == "fp16";
    if (is_finetune_method(m)) {
      // QLoRA and IR-QLoRA train over a 4-bit NF4 base (blocks of 64), LoRA over the base as loaded.
      const int64_t w = m == "lora" ? 16 : 4;
      if (methods.size() == 1) {
        for (int64_t b : wbits)
          if (b != w)
            s.bad("wbits",
                  fmt::format("wbits = {}: {} trains over {}; leave wbits out or give {}", b, m,
                              m == "lora" ? "the unquantized base (16 bits)" : "a 4-bit NF4 base", w));
        if (s.has("group"))
          s.bad("group",
                fmt::format("does not apply to a fine-tune row ({})",
                            m == "lora" ? "its base is not quantized" : "NF4's blocks are 64 weights"));
        for (const MethodOption* o : given) s.bad(o->name, "does not apply to a fine-tune row");
      }
      for (int64_t a : abits)
        if (a != 16) s.bad("abits", fmt::format("abits = {}: a fine-tune row has 16-bit activations", a));
      StudyRow r;
      r.where = where;
      r.finetune = read_finetune(s, ft_defaults);
      r.finetune->method = m;
      if (s.has("data")) r.finetune->data_key = where + ".data";
      r.quant.method = m;
      r.quant.wbits = int(w);
      r.quant.group = m == "lora" ? kPerChannel : 64;
      r.settings = {{"method", m},
                    {"wbits", w},
                    {"abits", 16},
                    {"group", r.quant.group},
                    {"finetune", r.finetune->settings()}};
      r.tasks = tasks;
      out.push_back(std::move(r));
      continue;
    }
    if (!fp && !find_method(m)) s.bad("method", fmt::format("unknown method '{}' (known: {})", m, known));
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
      r.tasks = tasks;
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
          r.tasks = tasks;
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

// What a fine-tune row needs of the model's shape: NF4's blocks of 64 dividing every linear's input width
// (qlora, ir-qlora), and IEC's rank dividing both widths of every linear (ir-qlora; train/lora.h).
void check_finetune_shapes(const ModelConfig& c, const FinetuneSpec& f) {
  if (f.method != "lora") {
    QuantConfig q;
    q.method = "nf4";
    q.wbits = 4;
    q.group = 64;
    validate_quant_settings(c, q);
  }
  if (method_uses_iec(f.method)) {
    const std::pair<const char*, int64_t> widths[] = {{"hidden size", c.n_embd},
                                                      {"attention width", int64_t(c.n_head) * c.head_dim},
                                                      {"key/value width", int64_t(c.n_kv_head) * c.head_dim},
                                                      {"intermediate size", c.n_ff}};
    for (const auto& [what, w] : widths)
      if (w % f.lora.rank != 0)
        fail(
            "rank {} does not divide the {} {}: IR-QLoRA's IEC needs the rank to divide every linear's "
            "widths",
            f.lora.rank, what, w);
  }
}

}  // namespace

StudySpec parse_study(const std::string& text, const std::string& source) {
  register_train_methods();  // a study may name db-llm, which the training layer registers
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    fail("{}:{}:{}: TOML syntax error: {}", source, e.source().begin.line, e.source().begin.column,
         e.description());
  }
  StudySpec spec;
  spec.source = source;
  Section top(root, "", source, {"name", "models", "calibration", "perplexity", "tasks", "finetune", "rows"});
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

  const toml::table* ft = top.table("finetune");
  Section fts(ft ? *ft : kEmpty, "finetune", source, kFinetuneKeys);
  FinetuneSpec ft_defaults = read_finetune(fts, FinetuneSpec{});
  ft_defaults.data_key = "finetune.data";

  const toml::node* rn = root.get("rows");
  const toml::array* rows = rn ? rn->as_array() : nullptr;
  if (!rows || rows->empty()) top.bad("rows", "missing: give at least one [[rows]] table");
  std::map<std::string, size_t> seen;  // settings -> index in spec.rows
  for (size_t i = 0; i < rows->size(); ++i) {
    const std::string where = fmt::format("rows[{}]", i);
    const toml::table* rt = (*rows)[i].as_table();
    if (!rt) top.bad(where, "expected a table ([[rows]])");
    Section rs(*rt, where, source, row_keys());
    for (StudyRow& r : expand_rows(rs, where, spec, ft_defaults)) {
      auto [it, fresh] = seen.try_emplace(r.settings.dump(), spec.rows.size());
      if (fresh) {
        spec.rows.push_back(std::move(r));
        continue;
      }
      // A repeated row measures the union of both task lists.
      StudyRow& first = spec.rows[it->second];
      if (r.tasks || first.tasks) {
        std::vector<std::string> merged = spec.row_tasks(first);
        for (const std::string& t : spec.row_tasks(r))
          if (std::find(merged.begin(), merged.end(), t) == merged.end()) merged.push_back(t);
        first.tasks = merged;
      }
    }
  }
  const bool any_tasks =
      !spec.tasks.empty() ||
      std::any_of(spec.rows.begin(), spec.rows.end(), [](const StudyRow& r) { return r.tasks.has_value(); });
  if (spec.ppl_datasets.empty() && !any_tasks)
    top.bad("perplexity",
            "the study measures nothing: give perplexity.datasets, tasks.names or a row's tasks");
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
        if (r.is_finetune())
          check_finetune_shapes(ck.config, *r.finetune);
        else
          validate_quant_settings(ck.config, r.quant);
      } catch (const Error& e) {
        fail("{}: {}: {}: {}", spec.source, r.where, m, e.what());
      }
    }
  }
  // Fine-tune data: the file, and Alpaca records read whole (a malformed record fails now, not after hours).
  std::set<std::string> data_checked;
  for (const StudyRow& r : spec.rows) {
    if (!r.is_finetune()) continue;
    const FinetuneSpec& f = *r.finetune;
    if (!data_checked.insert(f.format + ":" + f.data).second) continue;
    try {
      const std::string path = resolve_data_path(f.data, paths);
      if (f.format == "alpaca") read_alpaca_file(path);
    } catch (const Error& e) {
      fail("{}: {}: {}", spec.source, f.data_key, e.what());
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
  // Each task once, named by the first key that asks for it.
  std::vector<std::pair<std::string, std::string>> tasks;  // (task, key)
  for (const std::string& t : spec.tasks) tasks.emplace_back(t, "tasks.names");
  for (const StudyRow& r : spec.rows)
    if (r.tasks)
      for (const std::string& t : *r.tasks) tasks.emplace_back(t, r.where + ".tasks");
  std::set<std::string> loaded;
  for (const auto& [t, key] : tasks) {
    if (!loaded.insert(t).second) continue;
    try {
      load_task(t, paths.data_dir, 1, t == "mmlu" ? spec.num_fewshot : -1);
    } catch (const Error& e) {
      fail("{}: {}: {}", spec.source, key, e.what());
    }
  }
}

}  // namespace lowbit

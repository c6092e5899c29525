#include "study/runner.h"

#include <fmt/format.h>
#include <signal.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "core/blas.h"
#include "core/error.h"
#include "core/mmap.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/sys.h"
#include "eval/harness.h"
#include "eval/kld.h"
#include "eval/perplexity.h"
#include "eval/ppl_texts.h"
#include "formats/format.h"
#include "io/checkpoint.h"
#include "model/save.h"
#include "study/provenance.h"
#include "study/store.h"
#include "train/data.h"
#include "train/finetune.h"
#include "train/peft.h"
#include "train/qlora.h"

namespace fs = std::filesystem;

namespace lowbit {

namespace {

struct Column {
  std::string name;  // "quant", "finetune", "ppl:wikitext2", "task:piqa", "mmlu"
  Json params;
};

struct PlannedModel {
  std::string name, path, hash;
  Json info;
};

struct Unit {
  int64_t index = 0;
  size_t model = 0, row = 0;
  Json row_id;  // settings + calibration identity
  std::vector<Column> columns;
  std::vector<std::string> keys;  // per column
};

struct Plan {
  std::vector<PlannedModel> models;
  std::vector<Unit> units;
  Json calibration;  // {"file", "sha256", "nsamples", "seqlen", "seed"} (null when no row calibrates)
};

// JSON has no inf/NaN: the store (and the reports) spell them as strings.
Json num(double x) {
  if (std::isfinite(x)) return x;
  return std::isnan(x) ? "nan" : x > 0 ? "inf" : "-inf";
}

Json model_info(const ModelConfig& c) {
  const int64_t d = c.n_embd, f = c.n_ff, q = int64_t(c.n_head) * c.head_dim,
                kv = int64_t(c.n_kv_head) * c.head_dim;
  const int64_t per_layer = d * q * 2 + d * kv * 2 + 3 * d * f + 2 * d;
  const int64_t params = c.n_layer * per_layer + c.n_vocab * d * (c.tie_word_embeddings ? 1 : 2) + d;
  return {{"n_layer", c.n_layer},     {"n_embd", c.n_embd}, {"n_vocab", c.n_vocab}, {"n_head", c.n_head},
          {"n_kv_head", c.n_kv_head}, {"n_ff", c.n_ff},     {"n_params", params}};
}

// sha256 over the files that define a checkpoint: "name sha256\n" per file, sorted by name.
std::string model_files_hash(ResultStore& store, const std::string& path) {
  if (!is_directory(path)) return store.file_sha256(path);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(path)) {
    const std::string n = e.path().filename().string();
    if (e.is_regular_file() &&
        (n == "config.json" || n.ends_with(".safetensors") || n.starts_with("tokenizer")))
      names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  std::string lines;
  for (const auto& n : names) lines += n + " " + store.file_sha256(path + "/" + n) + "\n";
  return sha256_hex(lines.data(), lines.size());
}

std::vector<Column> columns_for(const StudySpec& spec, const StudyRow& row) {
  std::vector<Column> cols;
  if (row.is_finetune())
    cols.push_back({"finetune", Json::object()});
  else if (!row.baseline())
    cols.push_back({"quant", Json::object()});
  for (size_t i = 0; i < spec.ppl_datasets.size(); ++i)
    cols.push_back({"ppl:" + spec.ppl_datasets[i],
                    {{"seqlen", spec.ppl_seqlen},
                     {"max_windows", spec.ppl_max_windows},
                     {"kld", i == 0 && spec.kld && !row.baseline()}}});
  for (const std::string& t : spec.row_tasks(row)) {
    if (t == "mmlu")
      cols.push_back({"mmlu",
                      {{"limit", spec.mmlu_limit >= 0 ? spec.mmlu_limit : spec.task_limit},
                       {"num_fewshot", spec.num_fewshot}}});
    else
      cols.push_back({"task:" + t, {{"limit", spec.task_limit}}});
  }
  return cols;
}

Plan make_plan(const StudySpec& spec, ResultStore& store, const SearchPaths& paths) {
  Plan plan;
  for (const StudyRow& r : spec.rows)
    if (method_needs_calibration(r.quant.method)) {
      const std::string f = resolve_data_path(spec.calib_file, paths);
      plan.calibration = {{"file", spec.calib_file},
                          {"sha256", store.file_sha256(f)},
                          {"nsamples", spec.calib_nsamples},
                          {"seqlen", spec.calib_seqlen},
                          {"seed", spec.calib_seed}};
      break;
    }
  for (const std::string& m : spec.models) {
    PlannedModel pm;
    pm.name = m;
    pm.path = resolve_model_path(m, paths);
    pm.hash = model_files_hash(store, pm.path);
    pm.info = model_info(load_checkpoint(pm.path).config);
    plan.models.push_back(std::move(pm));
  }
  for (size_t mi = 0; mi < plan.models.size(); ++mi)
    for (size_t ri = 0; ri < spec.rows.size(); ++ri) {
      const StudyRow& row = spec.rows[ri];
      Unit u;
      u.index = int64_t(plan.units.size());
      u.model = mi;
      u.row = ri;
      u.row_id = row.settings;
      // The calibration's content, not its path, identifies the row: shards on other machines agree.
      if (method_needs_calibration(row.quant.method)) {
        Json c = plan.calibration;
        c.erase("file");
        u.row_id["calibration"] = c;
      }
      // A fine-tune row is identified by its data's content too (the path is dropped, as the calibration's).
      if (row.is_finetune()) {
        Json& f = u.row_id["finetune"];
        f["data_sha256"] = store.file_sha256(resolve_data_path(row.finetune->data, paths));
        f.erase("data");
      }
      u.columns = columns_for(spec, row);
      for (const Column& c : u.columns) {
        const Json id = {{"model", plan.models[mi].hash},
                         {"row", u.row_id},
                         {"column", c.name},
                         {"params", c.params},
                         {"lowbit_version", LOWBIT_VERSION}};
        const std::string s = id.dump();
        u.keys.push_back(sha256_hex(s.data(), s.size()));
      }
      plan.units.push_back(std::move(u));
    }
  return plan;
}

// Removes temporary directories that killed runs left for this cache entry (their process is gone).
void remove_stale_tmp(const std::string& final_dir) {
  const fs::path p(final_dir);
  std::error_code ec;
  if (!fs::is_directory(p.parent_path(), ec)) return;
  const std::string prefix = p.filename().string() + ".tmp-";
  for (const auto& e : fs::directory_iterator(p.parent_path(), ec)) {
    const std::string n = e.path().filename().string();
    if (!n.starts_with(prefix)) continue;
    const long pid = std::strtol(n.c_str() + prefix.size(), nullptr, 10);
    if (pid > 0 && kill(pid_t(pid), 0) == 0) continue;  // still being written by a live process
    fs::remove_all(e.path(), ec);
  }
}

// What a fine-tune trained on, for the run's output and the report: the study fine-tunes on Alpaca, and a
// run on plain text says so.
std::string finetune_data_note(const FinetuneSpec& f, size_t examples) {
  if (f.format == "alpaca") return fmt::format("fine-tuning on {} ({} Alpaca records)", f.data, examples);
  return fmt::format(
      "fine-tuning on {} as plain text ({} windows of {} tokens); the study fine-tunes on Alpaca "
      "(tatsu-lab/alpaca), which this run did not use",
      f.data, examples, f.seq_len);
}

class Runner {
 public:
  Runner(const StudySpec& spec, ResultStore& store, const StudyOptions& opt, Plan plan)
      : spec_(spec), store_(store), opt_(opt), plan_(std::move(plan)) {
    cache_dir_ = opt.cache_dir.empty() ? store.path() + ".cache" : opt.cache_dir;
  }

  StudySummary run() {
    StudySummary sum;
    Timer timer;
    const std::set<std::string> have = store_.keys();
    std::vector<const Unit*> mine;
    for (const Unit& u : plan_.units) {
      sum.plan_keys.insert(sum.plan_keys.end(), u.keys.begin(), u.keys.end());
      if (u.index % opt_.shard_count != opt_.shard_index - 1) continue;
      mine.push_back(&u);
      for (const auto& k : u.keys) {
        ++sum.cells;
        sum.already_stored += have.count(k);
      }
    }
    total_ = sum.cells;
    done_ = sum.already_stored;
    if (!opt_.quiet)
      fmt::print(
          stderr, "study {}: {} cells{}, {} already in {}, {} to compute\n", spec_.name, sum.cells,
          opt_.shard_count > 1 ? fmt::format(" in shard {}/{}", opt_.shard_index, opt_.shard_count) : "",
          sum.already_stored, store_.path(), sum.cells - sum.already_stored);
    for (const Unit* u : mine) {
      std::vector<size_t> pending;
      for (size_t c = 0; c < u->columns.size(); ++c)
        if (!have.count(u->keys[c])) pending.push_back(c);
      if (!pending.empty()) run_unit(*u, pending);
    }
    sum.computed = computed_;
    sum.seconds = timer.seconds();
    const StoredTally stored = stored_tally(store_, sum.plan_keys);
    sum.stored_cells = stored.cells;
    sum.stored_seconds = stored.seconds;
    return sum;
  }

 private:
  struct LoadedBase {
    std::unique_ptr<LlamaModel> model;
    std::unique_ptr<Tokenizer> tok;
    std::map<std::string, std::pair<std::vector<int32_t>, Json>> texts;  // dataset -> (ids, data files)
  };

  LoadedBase& base(size_t mi) {
    if (base_index_ != mi || !base_.model) {
      base_ = LoadedBase{};
      base_.model = std::make_unique<LlamaModel>(load_checkpoint(plan_.models[mi].path));
      base_.tok = load_tokenizer_for_model(plan_.models[mi].path);
      base_index_ = mi;
    }
    return base_;
  }

  // The quantized checkpoint of a unit, from the cache or made now (then saved and reloaded, so that every
  // cell is computed from the same bytes whether or not the run was interrupted).
  std::string quantized_dir(const Unit& u, const std::string& row_key) {
    const PlannedModel& pm = plan_.models[u.model];
    const std::string dir = fmt::format("{}/{}-{}", cache_dir_, pm.hash.substr(0, 16), row_key.substr(0, 16));
    if (is_directory(dir)) return dir;
    remove_stale_tmp(dir);
    const StudyRow& row = spec_.rows[u.row];
    QuantConfig q = row.quant;
    q.calib_file = resolve_data_path(spec_.calib_file, opt_.paths);
    q.quiet = opt_.quiet;
    // A trained method (db-llm) checkpoints its training beside the entry, so a killed study resumes it.
    if (const Method* m = find_method(q.method); m && m->quantize_model) q.work_dir = dir + ".work";
    announce(pm, row, "quantize");
    LlamaModel m(load_checkpoint(pm.path));
    LoadedBase& b = base(u.model);
    QuantReport rep = quantize_model(m, *b.tok, q);
    Json qc = quantization_config_json(q, rep, pm.name);
    const std::string tmp = fmt::format("{}.tmp-{}", dir, getpid());
    std::error_code ec;
    fs::remove_all(tmp, ec);
    const uint64_t bytes = save_model(m, tmp, qc);
    const Json report = {{"bits_per_weight", rep.bits_per_weight},
                         {"paper_bits_per_weight", rep.paper_bits},
                         {"output_bytes", bytes},
                         {"n_weights", rep.n_weights},
                         {"seconds", rep.seconds},
                         {"peak_rss_bytes", peak_rss_bytes()}};
    write_file_atomic(tmp + "/lowbit_quant_report.json", report.dump(2) + "\n");
    fs::rename(tmp, dir, ec);
    if (ec) fail("{}: cannot move the quantized checkpoint into the cache: {}", dir, ec.message());
    if (!q.work_dir.empty()) fs::remove_all(q.work_dir, ec);
    return dir;
  }

  // The adapter of a fine-tune unit, from the cache or trained now. Training runs in the cache entry itself:
  // finetune() checkpoints there and resumes from its last checkpoint, ending with the adapter an
  // uninterrupted run would have made; lowbit_finetune_report.json, written last, marks the entry complete.
  std::string finetuned_dir(const Unit& u, const std::string& row_key) {
    const PlannedModel& pm = plan_.models[u.model];
    const std::string dir = fmt::format("{}/{}-{}", cache_dir_, pm.hash.substr(0, 16), row_key.substr(0, 16));
    const std::string report_file = dir + "/lowbit_finetune_report.json";
    if (path_exists(report_file)) return dir;
    const StudyRow& row = spec_.rows[u.row];
    const FinetuneSpec& f = *row.finetune;
    announce(pm, row, "train");
    LoadedBase& b = base(u.model);
    const std::string data_path = resolve_data_path(f.data, opt_.paths);
    Timer prep;
    std::vector<TrainExample> data = f.format == "text"
                                         ? text_file_examples(data_path, *b.tok, f.seq_len)
                                         : alpaca_examples(read_alpaca_file(data_path), *b.tok, f.alpaca);
    const std::string note = finetune_data_note(f, data.size());
    if (!opt_.quiet) {
      const std::string missing = f.format == "text" ? alpaca_missing_message(opt_.paths.data_dir) : "";
      fmt::print(stderr, "note: {}{}{}\n", note, missing.empty() ? "" : ". ", missing);
    }
    LlamaModel m(load_checkpoint(pm.path));
    const std::string fingerprint = base_fingerprint(m.checkpoint());
    // As lowbit finetune: the base first (NF4 straight from the stored weights), then the head (and a dense
    // base), read every step, widened once; the other order would widen every block weight to f32 first.
    prepare_finetune_base(m, f.method, opt_.quiet);
    m.keep_f32_weights();
    // The base's storage, as a quantized row's bits/w: the NF4 block linears (double-quantized absmax), or 16
    // for a dense base as for the fp16 row; the adapter's weights are not counted (the paper's #W = 4).
    double bits = 0, weights = 0;
    for (int l = 0; l < m.config().n_layer; ++l)
      for (LinearKind k : kAllLinears) {
        const Linear& lin = m.linear(l, k);
        const double n = double(lin.rows()) * double(lin.cols());
        weights += n;
        bits += n * (lin.packed ? lin.packed->format().bits_per_weight(*lin.packed) : 16.0);
      }
    LoraSet lora(m, f.lora_config());
    const double prep_seconds = prep.seconds();
    FinetuneOptions o = f.opt;
    o.quiet = opt_.quiet;
    const FinetuneResult r = finetune(m, lora, data, o, AdapterMeta{f.method, pm.path, fingerprint}, dir);
    int64_t loss_tokens = 0;
    for (const TrainExample& ex : data) loss_tokens += count_loss_tokens(ex);
    const Json report = {{"steps", r.steps},
                         {"tokens", r.total_tokens},
                         {"final_loss", num(r.last_loss)},
                         {"first_loss", num(r.losses.empty() ? 0.0 : r.losses.front())},
                         {"examples", int64_t(data.size())},
                         {"example_loss_tokens", loss_tokens},
                         {"bits_per_weight", weights > 0 ? bits / weights : 0.0},
                         {"train_seconds", r.total_seconds},
                         {"prepare_seconds", prep_seconds},
                         {"resumed_from", r.resumed_from},
                         {"peak_rss_bytes", peak_rss_bytes()},
                         {"data_file", data_path},
                         {"data_note", note}};
    write_file_atomic(report_file, report.dump(2) + "\n");
    if (!opt_.quiet)
      fmt::print(stderr, "{}: {} steps, final loss {:.4f}, {} tokens, {} of training{}\n", row.label(),
                 r.steps, r.last_loss, r.total_tokens, format_duration(r.total_seconds),
                 r.resumed_from ? fmt::format(" (resumed at step {})", r.resumed_from) : "");
    return dir;
  }

  void run_unit(const Unit& u, const std::vector<size_t>& pending) {
    const StudyRow& row = spec_.rows[u.row];
    const PlannedModel& pm = plan_.models[u.model];
    LoadedBase& b = base(u.model);
    std::unique_ptr<LlamaModel> qmodel;
    std::string qdir;
    LlamaModel* model = b.model.get();
    if (row.is_finetune()) {
      const std::string id = u.row_id.dump();
      qdir = finetuned_dir(u, sha256_hex(id.data(), id.size()));
      // Evaluated from the saved adapter (as a resumed study would): the base prepared by the adapter's
      // method, the adapter attached unmerged (train/qlora.h apply_adapter).
      qmodel = std::make_unique<LlamaModel>(load_checkpoint(pm.path));
      apply_adapter(*qmodel, qdir, opt_.quiet);
      model = qmodel.get();
    } else if (!row.baseline()) {
      const std::string id = u.row_id.dump();
      qdir = quantized_dir(u, sha256_hex(id.data(), id.size()));
      qmodel = std::make_unique<LlamaModel>(load_checkpoint(qdir));
      if (row.abits < 16) set_activation_bits(*qmodel, row.abits);
      model = qmodel.get();
    }
    for (size_t c : pending) {
      const Column& col = u.columns[c];
      announce(pm, row, col.name);
      CellRecord rec;
      rec.key = u.keys[c];
      rec.seq = u.index * 100 + int64_t(c);
      rec.model = pm.name;
      rec.model_hash = pm.hash;
      rec.model_info = pm.info;
      rec.row = u.row_id;
      rec.column = col.name;
      rec.params = col.params;
      rec.provenance = {{"git_revision", git_revision()},
                        {"threads", num_threads()},
                        {"blas_kernels", blas_kernels_description()},
                        {"model_path", pm.path},
                        {"study", spec_.name}};
      if (!plan_.calibration.is_null() && method_needs_calibration(row.quant.method))
        rec.provenance["calibration"] = plan_.calibration;
      if (col.name == "quant") {  // measured when the checkpoint was made (possibly by an earlier run)
        const Json rep = Json::parse(read_file(qdir + "/lowbit_quant_report.json"));
        rec.metrics = {{"bits_per_weight", rep.at("bits_per_weight")},
                       {"output_bytes", rep.at("output_bytes")},
                       {"n_weights", rep.at("n_weights")}};
        if (rep.contains("paper_bits_per_weight"))  // cache entries made before it was recorded lack it
          rec.metrics["paper_bits_per_weight"] = rep.at("paper_bits_per_weight");
        rec.seconds = rep.at("seconds").get<double>();
        rec.peak_rss = rep.at("peak_rss_bytes").get<uint64_t>();
        rec.provenance["checkpoint"] = qdir;
      } else if (col.name == "finetune") {  // measured when the adapter was trained (possibly resumed)
        const Json rep = Json::parse(read_file(qdir + "/lowbit_finetune_report.json"));
        rec.metrics = {{"steps", rep.at("steps")},           {"tokens", rep.at("tokens")},
                       {"final_loss", rep.at("final_loss")}, {"first_loss", rep.at("first_loss")},
                       {"examples", rep.at("examples")},     {"bits_per_weight", rep.at("bits_per_weight")}};
        rec.seconds = rep.at("train_seconds").get<double>() + rep.at("prepare_seconds").get<double>();
        rec.peak_rss = rep.at("peak_rss_bytes").get<uint64_t>();
        rec.provenance["adapter"] = qdir;
        Json files = Json::object();
        files[rep.at("data_file").get<std::string>()] = u.row_id.at("finetune").at("data_sha256");
        rec.provenance["data_files"] = files;
        rec.provenance["finetune_data"] = spec_.rows[u.row].finetune->data;
        rec.provenance["finetune_note"] = rep.at("data_note");
        rec.provenance["train_seconds"] = rep.at("train_seconds");
        rec.provenance["resumed_from"] = rep.at("resumed_from");
      } else {
        Timer t;
        if (col.name.starts_with("ppl:"))
          run_ppl(b, *model, col, rec);
        else
          run_task(b, *model, col, rec);
        rec.seconds = t.seconds();
        rec.peak_rss = peak_rss_bytes();
      }
      rec.lowbit_version = LOWBIT_VERSION;
      rec.created_at = utc_now_iso();
      store_.put(rec);
      ++done_;
      ++computed_;
      compute_seconds_ += rec.seconds;
    }
  }

  void run_ppl(LoadedBase& b, const LlamaModel& model, const Column& col, CellRecord& rec) {
    const std::string ds = col.name.substr(4);
    auto it = b.texts.find(ds);
    if (it == b.texts.end()) {
      EvalText et = build_eval_text(ds, opt_.paths);
      if (!et.note.empty() && !opt_.quiet) fmt::print(stderr, "note: {}\n", et.note);
      Json files = Json::object();
      for (const auto& f : et.files) files[f] = store_.file_sha256(f);
      if (!et.note.empty()) files["note"] = et.note;
      it = b.texts.emplace(ds, std::pair{b.tok->encode_with_bos(et.text), files}).first;
    }
    PplOptions po;
    po.seqlen = col.params.at("seqlen").get<int>();
    po.max_windows = col.params.at("max_windows").get<int>();
    po.quiet = opt_.quiet;
    po.label = ds;
    KldAccumulator kld;
    const bool with_kld = col.params.at("kld").get<bool>();
    if (with_kld) po.on_window = kld_window_hook(*b.model, po.seqlen, kld);
    const PplResult r = perplexity(model, it->second.first, po);
    rec.metrics = {{"ppl", num(r.ppl)},
                   {"nll_mean", num(r.nll_sum / (double(r.windows) * r.seqlen))},
                   {"windows", r.windows},
                   {"seqlen", r.seqlen},
                   {"n_tokens", r.n_tokens}};
    if (with_kld) {
      const auto k = kld.summary();
      rec.metrics["kld_mean"] = num(k.mean);
      rec.metrics["kld_median"] = num(k.median);
      rec.metrics["kld_p99"] = num(k.p99);
      rec.metrics["kld_max"] = num(k.max);
      rec.metrics["top1_agreement"] = k.top1_agreement;
      rec.metrics["kld_positions"] = k.n;
    }
    rec.provenance["data_files"] = it->second.second;
  }

  void run_task(LoadedBase& b, LlamaModel& model, const Column& col, CellRecord& rec) {
    const std::string task = col.name == "mmlu" ? "mmlu" : col.name.substr(5);
    EvalOptions e;
    e.tasks = {task};
    e.data_dir = opt_.paths.data_dir;
    e.limit = col.params.at("limit").get<int>();
    if (task == "mmlu") e.num_fewshot = col.params.at("num_fewshot").get<int>();
    e.model_name = plan_.models[base_index_].name;
    e.quiet = opt_.quiet;
    widen_weights_for_scoring(model, opt_.quiet);
    const Json r = run_eval(model, *b.tok, e);
    const Json& res = r.at("results").at(task);
    rec.metrics = Json::object();
    for (auto& [k, v] : res.items())
      if (v.is_number()) rec.metrics[k] = v;  // null (NaN stderr of n < 2) stays absent
    if (task == "mmlu")
      for (const char* cat : {"humanities", "stem", "social_sciences", "other"}) {
        const Json& c = r.at("results").at(std::string("mmlu_") + cat).at("acc");
        if (c.is_number()) rec.metrics[cat] = c;
      }
    rec.provenance["data_files"] = r.at("data_files").at(task);
    rec.provenance["task_version"] = r.at("versions").at(task);
    rec.provenance["timing"] = r.at("timing").at(task);
  }

  void announce(const PlannedModel& pm, const StudyRow& row, const std::string& what) {
    if (opt_.quiet) return;
    const double elapsed = run_timer_.seconds();
    const int64_t left = total_ - done_;
    std::string eta = computed_ > 0
                          ? "ETA ~" + format_duration(compute_seconds_ / double(computed_) * double(left))
                          : "ETA after the first cell";
    fmt::print(stderr, "[study {} {}/{} cells, {:.0f}%, elapsed {}, {}] {} · {} · {}\n", spec_.name, done_,
               total_, total_ ? 100.0 * double(done_) / double(total_) : 100.0, format_duration(elapsed), eta,
               pm.name, row.label(), what);
  }

  const StudySpec& spec_;
  ResultStore& store_;
  const StudyOptions& opt_;
  Plan plan_;
  std::string cache_dir_;
  LoadedBase base_;
  size_t base_index_ = SIZE_MAX;
  int64_t total_ = 0, done_ = 0, computed_ = 0;
  double compute_seconds_ = 0;
  Timer run_timer_;
};

}  // namespace

StudySummary run_study(const StudySpec& spec, ResultStore& store, const StudyOptions& opt) {
  if (opt.shard_count < 1 || opt.shard_index < 1 || opt.shard_index > opt.shard_count)
    fail("--shard {}/{}: expected i/n with 1 <= i <= n", opt.shard_index, opt.shard_count);
  if (!opt.inputs_checked) check_study_inputs(spec, opt.paths);
  Runner r(spec, store, opt, make_plan(spec, store, opt.paths));
  return r.run();
}

StoredTally stored_tally(const ResultStore& store, const std::vector<std::string>& keys) {
  const std::set<std::string> wanted(keys.begin(), keys.end());
  StoredTally t;
  for (const CellRecord& c : store.cells())
    if (wanted.count(c.key)) t.seconds += c.seconds, ++t.cells;
  return t;
}

std::vector<std::string> study_keys(const StudySpec& spec, ResultStore& store, const SearchPaths& paths) {
  std::vector<std::string> keys;
  for (const Unit& u : make_plan(spec, store, paths).units)
    keys.insert(keys.end(), u.keys.begin(), u.keys.end());
  return keys;
}

int64_t merge_stores(ResultStore& into, const ResultStore& from, int64_t* conflicts) {
  std::map<std::string, Json> have;
  for (const CellRecord& c : into.cells()) have[c.key] = c.metrics;
  int64_t copied = 0, conf = 0;
  for (const CellRecord& c : from.cells()) {
    auto it = have.find(c.key);
    if (it != have.end()) {
      conf += it->second != c.metrics;
      continue;
    }
    copied += into.put(c);
  }
  if (conflicts) *conflicts = conf;
  return copied;
}

}  // namespace lowbit

#include "train/dbllm.h"

#include <cmath>
#include <filesystem>
#include <functional>
#include <iterator>
#include <map>

#include "core/error.h"
#include "core/json.h"
#include "core/mmap.h"
#include "core/progress.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "model/llama.h"
#include "model/sampler.h"
#include "quant/calib.h"
#include "quant/methods/rtn.h"
#include "quant/quantize.h"
#include "train/checkpoint_dir.h"
#include "train/data.h"
#include "train/fdb.h"
#include "train/llama_train.h"
#include "train/optim.h"

namespace fs = std::filesystem;

namespace lowbit {

std::vector<std::vector<int32_t>> generate_self_data(const LlamaModel& model, int n_seq, int seq_len,
                                                     uint64_t seed, int greedy, bool quiet) {
  const ModelConfig& c = model.config();
  const int V = c.n_vocab;
  auto special = [&](int t) {
    if (t == c.bos_token_id) return true;
    for (int e : c.eos_token_ids)
      if (t == e) return true;
    return false;
  };
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(n_seq));
  std::vector<float> logits(static_cast<size_t>(V));
  Progress bar("db-llm: generating data", uint64_t(n_seq) * uint64_t(seq_len), "tok", quiet);
  for (int i = 0; i < n_seq; ++i) {
    const uint64_t key = subkey(seed, uint64_t(i));
    std::vector<int32_t>& seq = out[size_t(i)];
    int32_t t = 0;
    for (uint64_t draw = 0;; ++draw) {  // uniform over the vocabulary without BOS/EOS
      t = int32_t(std::min<double>(V - 1, std::floor(uniform01(key, draw) * V)));
      if (!special(t)) break;
    }
    seq.push_back(t);
    Sampler sampler(SamplerOptions{1.0f, 1.0f, subkey(key, 1u << 20)});
    KVCache cache = model.new_cache(seq_len);
    while (int(seq.size()) < seq_len) {
      const int32_t last = seq.back();
      model.forward(std::span<const int32_t>(&last, 1), cache, logits.data());
      seq.push_back(int(seq.size()) <= greedy ? argmax(logits.data(), V) : sampler.sample(logits.data(), V));
    }
    bar.add(uint64_t(seq_len));
  }
  bar.finish();
  return out;
}

namespace {

constexpr size_t kLinears = std::size(kAllLinears);

std::function<void(int64_t)>& step_hook() {
  static std::function<void(int64_t)> h;
  return h;
}

struct DbOptions {
  int64_t steps = 0;
  int batch = 0, seq_len = 0, samples = 0;
  double lr = 0, lr_scales = 0, gamma = 0;
  int64_t save_every = 0;
  std::string data;  // "generated" or "calib"
};

DbOptions db_options(const QuantConfig& cfg) {
  DbOptions o;
  o.steps = cfg.opt<int64_t>("train_steps");
  o.batch = cfg.opt<int>("train_batch");
  o.seq_len = cfg.opt<int>("train_seq_len");
  o.lr = cfg.opt<double>("train_lr");
  o.lr_scales = cfg.opt<double>("train_lr_scales");
  o.gamma = cfg.opt<double>("dad_gamma");
  o.samples = cfg.opt<int>("train_samples");
  o.save_every = cfg.opt<int64_t>("train_save_every");
  o.data = cfg.opt<std::string>("train_data");
  return o;
}

// Everything that decides the trained weights, for refusing to resume a checkpoint made otherwise.
Json options_json(const QuantConfig& cfg, const DbOptions& o) {
  return {
      {"steps", o.steps}, {"batch", o.batch},     {"seq_len", o.seq_len}, {"lr", o.lr},
      {"gamma", o.gamma}, {"samples", o.samples}, {"group", cfg.group},   {"seed", std::to_string(cfg.seed)}};
}

// The generated sequences, cached in the work directory (generation is the slow part of a resume).
std::vector<std::vector<int32_t>> training_data(const LlamaModel& model, const Tokenizer& tok,
                                                const QuantConfig& cfg, const DbOptions& o,
                                                QuantReport& rep) {
  if (o.data == "calib") {  // windows of the calibration text instead (what GPTQ and AWQ calibrate on)
    const CalibSet c = load_calibration(tok, cfg.calib_file, o.samples, o.seq_len, cfg.seed);
    rep.calib_sha256 = c.sha256;
    rep.calib_stream_tokens = c.stream_tokens;
    std::vector<std::vector<int32_t>> data(static_cast<size_t>(o.samples));
    for (int i = 0; i < o.samples; ++i)
      data[size_t(i)].assign(c.tokens.begin() + int64_t(i) * o.seq_len,
                             c.tokens.begin() + int64_t(i + 1) * o.seq_len);
    return data;
  }
  const std::string path = cfg.work_dir.empty() ? "" : cfg.work_dir + "/data.safetensors";
  const std::map<std::string, std::string> meta = {{"samples", std::to_string(o.samples)},
                                                   {"seq_len", std::to_string(o.seq_len)},
                                                   {"seed", std::to_string(cfg.seed)},
                                                   {"generator", "llm-qat greedy 3, then temperature 1"}};
  if (!path.empty() && fs::exists(path)) {
    const SafetensorsFile f = load_safetensors(path);
    auto it = f.tensors.find("tokens");
    const bool ok = f.metadata == meta && it != f.tensors.end() && it->second.dtype == DType::I32 &&
                    it->second.shape == std::vector<int64_t>{o.samples, o.seq_len};
    if (ok) {
      const int32_t* t = it->second.as<int32_t>();
      std::vector<std::vector<int32_t>> data(size_t(o.samples));
      for (int i = 0; i < o.samples; ++i) {
        data[size_t(i)].assign(t + int64_t(i) * o.seq_len, t + int64_t(i + 1) * o.seq_len);
        for (int32_t v : data[size_t(i)])
          if (v < 0 || v >= model.config().n_vocab) fail("{}: token id {} out of range", path, v);
      }
      return data;
    }
    fmt::print(stderr, "db-llm: {} was generated with other settings; generating again\n", path);
  }
  std::vector<std::vector<int32_t>> data =
      generate_self_data(model, o.samples, o.seq_len, subkey(cfg.seed, 0xDA7A), 3, cfg.quiet);
  if (!path.empty()) {
    std::vector<int32_t> flat;
    for (const auto& s : data) flat.insert(flat.end(), s.begin(), s.end());
    TensorView v{DType::I32, {o.samples, o.seq_len}, flat.data(), flat.size() * sizeof(int32_t), path};
    write_safetensors(path, {{"tokens", v}}, meta);
  }
  return data;
}

LoraSet no_adapters(const LlamaModel& model) {
  LoraConfig c;
  c.targets.clear();
  return LoraSet(model, c);
}

// A sequence as a training example: every position predicts the next token (the last predicts nothing).
void add_sequence(TrainBatch& b, const std::vector<int32_t>& seq) {
  std::vector<int32_t> labels(seq.begin() + 1, seq.end());
  labels.push_back(kIgnoreLabel);
  b.add(seq, labels);
}

struct Student {
  std::vector<FdbLinear> fdb;               // (L·7), layer-major in kAllLinears order
  std::vector<std::vector<float>> d_w_hat;  // ∂L/∂Ŵ per linear
  std::vector<ParamRef> params;             // all, for clipping and checkpoints
  std::vector<ParamRef> latents, scales;    // the two optimiser groups

  FdbLinear& at(int l, LinearKind k) { return fdb[size_t(l) * kLinears + size_t(k)]; }
};

// The student's current Ŵ as dense f32 linears, layer-major in kAllLinears order.
std::vector<Linear> fake_linears(Student& s) {
  std::vector<Linear> out;
  for (FdbLinear& f : s.fdb) {
    std::vector<float> w(size_t(f.rows() * f.cols()));
    f.weight(w.data());
    out.push_back(owned_f32_linear(std::move(w), f.rows(), f.cols()));
  }
  return out;
}

void set_linears(LlamaModel& model, const std::vector<Linear>& lin) {
  for (int l = 0; l < model.config().n_layer; ++l)
    for (LinearKind k : kAllLinears) model.set_linear(l, k, lin[size_t(l) * kLinears + size_t(k)]);
}

std::map<std::string, TensorView> param_tensors(const std::vector<ParamRef>& params) {
  std::map<std::string, TensorView> t;
  for (const ParamRef& p : params)
    t[p.name] = TensorView{DType::F32, {p.size}, p.value, size_t(p.size) * sizeof(float), ""};
  return t;
}

void db_llm_quantize(LlamaModel& model, const Tokenizer& tok, const QuantConfig& cfg, QuantReport& rep) {
  const DbOptions o = db_options(cfg);
  const ModelConfig& mc = model.config();
  const int L = mc.n_layer, d = mc.n_embd;
  if (cfg.group == kPerChannel) fail("db-llm needs a group size (the paper's is 128), not per channel");
  if (o.steps > 0 && o.data == "calib" && cfg.calib_file.empty())
    fail("db-llm trains on a calibration text by default: give --calib FILE, or --train-data generated");
  if (o.steps == 0) {  // FDB's initial state, RTN w2 exactly, straight from each weight: no training memory
    QuantSpec spec;
    spec.bits = 2;
    for (int l = 0; l < L; ++l)
      for (LinearKind k : kAllLinears) {
        const Linear& lin = model.linear(l, k);
        const std::vector<float> w = linear_to_f32(lin);
        const auto q = dualbin_from_affine(
            *quantize_rtn(w.data(), lin.rows(), lin.cols(), spec, Granularity::Group, cfg.group));
        rep.linears.push_back(linear_report(l, k, w, *q));
        install_linear(model, l, k, q);
      }
    return;
  }
  if (!cfg.work_dir.empty()) fs::create_directories(cfg.work_dir);
  const Json options = options_json(cfg, o);

  // 1. Data, and the full-precision linears (the teacher's; only block linears differ from the student).
  const std::vector<std::vector<int32_t>> data = training_data(model, tok, cfg, o, rep);
  std::vector<Linear> fp_linears;
  for (int l = 0; l < L; ++l)
    for (LinearKind k : kAllLinears) fp_linears.push_back(model.linear(l, k));

  // 2. The student, initialised from RTN w2 (FDB's initial state).
  Student s;
  std::vector<std::vector<float>> originals;  // for the report's relative error
  for (int l = 0; l < L; ++l)
    for (LinearKind k : kAllLinears) {
      const Linear& lin = model.linear(l, k);
      originals.push_back(linear_to_f32(lin));
      s.fdb.emplace_back(originals.back(), lin.rows(), lin.cols(), cfg.group);
    }
  for (int l = 0; l < L; ++l)
    for (LinearKind k : kAllLinears) {
      FdbLinear& f = s.at(l, k);
      const std::string name = linear_tensor_name(l, k);
      s.latents.push_back({name + ".latent", f.latent.data(), f.d_latent.data(), int64_t(f.latent.size())});
      s.scales.push_back({name + ".alpha1", f.alpha1.data(), f.d_alpha1.data(), int64_t(f.alpha1.size())});
      s.scales.push_back({name + ".alpha2", f.alpha2.data(), f.d_alpha2.data(), int64_t(f.alpha2.size())});
      s.d_w_hat.emplace_back(size_t(f.rows() * f.cols()));
    }

  s.params = s.latents;
  s.params.insert(s.params.end(), s.scales.begin(), s.scales.end());

  // 3. Resume.
  AdamW adam(AdamWConfig{o.lr, 0.9, 0.999, 1e-8, 0.0}),
      adam_scales(AdamWConfig{o.lr_scales, 0.9, 0.999, 1e-8, 0.0});
  BatchSampler sampler(o.samples, o.batch, cfg.seed);
  int64_t step = 0;
  std::vector<double> losses;
  if (const std::string ck = cfg.work_dir.empty() ? "" : find_checkpoint_dir(cfg.work_dir); !ck.empty()) {
    const std::string state_path = ck + "/trainer_state.json";
    try {
      const Json j = parse_json_file(state_path);
      if (j.at("options") != options)
        fail("made with other settings ({}); remove {} to start over", j.at("options").dump(), cfg.work_dir);
      step = j.at("step").get<int64_t>();
      losses = j.at("losses").get<std::vector<double>>();
      if (step < 0 || step > o.steps || int64_t(losses.size()) != step)
        fail("step {} with {} losses does not fit a run of {} steps", step, losses.size(), o.steps);
      sampler.restore_json(j.at("sampler").dump(), state_path);
    } catch (const Error& e) {
      fail("{}: {}", state_path, e.what());
    } catch (const std::exception& e) {
      fail("{}: malformed training state: {}", state_path, e.what());
    }
    const SafetensorsFile f = load_safetensors(ck + "/params.safetensors");
    for (const ParamRef& p : s.params) {
      auto it = f.tensors.find(p.name);
      if (it == f.tensors.end() || it->second.dtype != DType::F32 || it->second.numel() != p.size)
        fail("{}/params.safetensors: missing or malformed {}", ck, p.name);
      std::copy_n(it->second.as<float>(), p.size, p.value);
    }
    adam.load(ck + "/optimizer.safetensors", s.latents);
    adam_scales.load(ck + "/optimizer_scales.safetensors", s.scales);
    if (step > 0)
      for (FdbLinear& f : s.fdb) f.refresh();
    if (!cfg.quiet) fmt::print(stderr, "db-llm: resuming from {} at step {}\n", ck, step);
  }

  // 4. Quantization-aware distillation.
  std::vector<Linear> fake = fake_linears(s);
  set_linears(model, fake);
  LoraSet none = no_adapters(model);
  LlamaTrainer trainer(model, none, TrainerOptions{false});
  trainer.set_weight_grads(
      [&](int l, LinearKind k) { return s.d_w_hat[size_t(l) * kLinears + size_t(k)].data(); });
  const int64_t warmup = warmup_steps_from_ratio(o.steps, 0.03);
  Progress bar("db-llm: distillation", uint64_t(o.steps), "tok", cfg.quiet);
  bar.add(uint64_t(step), 0);
  std::vector<float> hid;
  while (step < o.steps) {
    TrainBatch b;
    for (int64_t i : sampler.next()) add_sequence(b, data[size_t(i)]);
    // The teacher's final states of this batch: the same model with its full-precision linears put back
    // for one forward (computed per step, so memory holds one batch of them, not the data set's).
    set_linears(model, fp_linears);
    hid.resize(b.tokens.size() * size_t(d));
    trainer.hidden(b, hid.data());
    set_linears(model, fake);
    for (auto& g : s.d_w_hat) std::fill(g.begin(), g.end(), 0.0f);
    for (FdbLinear& f : s.fdb) {
      std::fill(f.d_latent.begin(), f.d_latent.end(), 0.0f);
      std::fill(f.d_alpha1.begin(), f.d_alpha1.end(), 0.0f);
      std::fill(f.d_alpha2.begin(), f.d_alpha2.end(), 0.0f);
    }
    Distill dist{hid.data(), o.gamma, {}};
    const int64_t nt = b.n_targets();
    const LossSum ls = trainer.forward_backward(b, 1.0f / float(nt), subkey(cfg.seed, uint64_t(step)), dist);
    // The loss is the w-weighted mean Σ w·CE / Σ w: the weights redistribute the tokens' shares without
    // changing the loss's scale (so clipping and the learning rate mean the same for any γ). The backward
    // ran with 1/n_targets; rescale its gradients.
    const double wsum = dist.sums.weight;
    if (wsum > 0 && std::isfinite(wsum)) {
      const float f = float(double(nt) / wsum);
      for (auto& g : s.d_w_hat)
        for (float& v : g) v *= f;
    }
    for (size_t i = 0; i < s.fdb.size(); ++i) s.fdb[i].backward(s.d_w_hat[i].data());
    const double loss = wsum > 0 ? ls.sum / wsum : ls.mean();
    const double gnorm = clip_grad_norm(s.params, 1.0);
    if (!std::isfinite(loss) || !std::isfinite(gnorm))
      fail("db-llm: the loss diverged at step {} (loss {}, gradient norm {})", step + 1, loss, gnorm);
    const double sched = cosine_with_warmup(step, warmup, o.steps);
    adam.step(s.latents, o.lr * sched);  // lr 0 leaves the latent weights where they are
    adam_scales.step(s.scales, o.lr_scales * sched);
    for (FdbLinear& f : s.fdb) f.refresh();
    fake = fake_linears(s);
    ++step;
    losses.push_back(loss);
    bar.set_note(fmt::format("DAD {:.4f} KL {:.4f}", loss, dist.sums.kl / double(nt)));
    bar.add(1, uint64_t(b.tokens.size()));
    if (!cfg.work_dir.empty() && (step % o.save_every == 0 || step == o.steps))
      write_checkpoint_dir(cfg.work_dir, [&](const std::string& tmp) {
        write_safetensors(tmp + "/params.safetensors", param_tensors(s.params));
        adam.save(tmp + "/optimizer.safetensors");
        adam_scales.save(tmp + "/optimizer_scales.safetensors");
        const Json j = {{"step", step},
                        {"losses", losses},
                        {"options", options},
                        {"sampler", Json::parse(sampler.to_json())}};
        write_file_atomic(tmp + "/trainer_state.json", j.dump(1) + "\n");
      });
    if (step_hook()) step_hook()(step);
  }
  bar.finish();

  // 5. The packed model.
  for (int l = 0; l < L; ++l)
    for (LinearKind k : kAllLinears) {
      const size_t i = size_t(l) * kLinears + size_t(k);
      std::shared_ptr<DualBinWeight> q = s.fdb[i].pack();
      rep.linears.push_back(linear_report(l, k, originals[i], *q));
      install_linear(model, l, k, std::move(q));
    }
}

MethodOption int_option(const char* name, int64_t def, double min, double max, const char* help) {
  MethodOption o;
  o.name = name;
  o.type = OptionType::Int;
  o.def = def;
  o.min = min;
  o.max = max;
  o.help = help;
  return o;
}

MethodOption number_option(const char* name, double def, double min, bool exclusive, const char* help) {
  MethodOption o;
  o.name = name;
  o.type = OptionType::Number;
  o.def = def;
  o.min = min;
  o.min_exclusive = exclusive;
  o.help = help;
  return o;
}

}  // namespace

void set_db_llm_step_hook(std::function<void(int64_t)> hook) {
  step_hook() = std::move(hook);
}

const Method& db_llm_method() {
  static const Method m = [] {
    Method m;
    m.name = "db-llm";
    m.label = "DB-LLM";
    m.summary =
        "DB-LLM (Chen et al. 2024): flexible dual binarization trained by deviation-aware distillation from "
        "the full-precision model (on --calib text by default, or self-generated)";
    m.min_bits = m.max_bits = 2;
    m.format = "dualbin";
    m.options = {
        int_option("train_steps", 400, 0, 1e7,
                   "optimiser steps of the distillation (0: the RTN initial state)"),
        int_option("train_batch", 8, 1, 4096, "training sequences per step"),
        int_option("train_seq_len", 256, 2, 1 << 20, "tokens per training sequence"),
        number_option("train_lr", 2e-4, 0, false,
                      "AdamW peak learning rate of the latent weights (cosine decay, 3% warmup; 0: frozen)"),
        number_option("train_lr_scales", 2e-5, 0, false, "AdamW peak learning rate of the scales α1, α2"),
        number_option("dad_gamma", 1.0, 0, false,
                      "DAD's entropy exponent: (H_T·H_S)^γ (0: plain distillation)"),
        int_option("train_samples", 3200, 1, 1 << 20,
                   "training sequences: generated by the full-precision model, or windows of --calib"),
        int_option("train_save_every", 25, 1, 1e7, "checkpoint the training state every this many steps"),
        [] {
          MethodOption o;
          o.name = "train_data";
          o.type = OptionType::String;
          o.def = "calib";
          o.choices = {"generated", "calib"};
          o.help =
              "distillation text: generated by the full-precision model (data-free, the paper's), or windows "
              "of --calib";
          return o;
        }(),
    };
    m.quantize_model = db_llm_quantize;
    return m;
  }();
  return m;
}

void register_train_methods() {
  if (!find_method(db_llm_method().name)) register_method(db_llm_method());
}

}  // namespace lowbit

#include "train/finetune.h"

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/json.h"
#include "core/mmap.h"
#include "core/progress.h"
#include "core/rng.h"
#include "train/checkpoint_dir.h"
#include "train/optim.h"

namespace fs = std::filesystem;

namespace lowbit {

namespace {

std::function<void(int64_t)>& step_hook() {
  static std::function<void(int64_t)> h;
  return h;
}

std::vector<ParamRef> params_of(LoraSet& lora) {
  std::vector<ParamRef> p;
  for (auto& e : lora.entries()) {
    LoraAdapter& a = *e.adapter;
    p.push_back({e.module + ".lora_A", a.A.data(), a.dA.data(), int64_t(a.A.size())});
    p.push_back({e.module + ".lora_B", a.B.data(), a.dB.data(), int64_t(a.B.size())});
    if (a.iec) {
      p.push_back({e.module + ".lora_default_A_scale", &a.beta_a, &a.dbeta_a, 1});
      p.push_back({e.module + ".lora_default_B_scale", &a.beta_b, &a.dbeta_b, 1});
    }
  }
  return p;
}

// The options a resumed run must share with the run it resumes (anything that changes its result).
Json options_json(const FinetuneOptions& o, const LoraConfig& c, int64_t n_examples) {
  return {{"steps", o.steps},
          {"batch", o.batch},
          {"micro_batch", o.micro_batch},
          {"lr", o.lr},
          {"schedule", o.schedule},
          {"warmup_ratio", o.warmup_ratio},
          {"max_grad_norm", o.max_grad_norm},
          {"weight_decay", o.weight_decay},
          {"seed", std::to_string(o.seed)},
          {"rank", c.rank},
          {"alpha", c.alpha},
          {"dropout", c.dropout},
          {"iec", c.iec},
          {"examples", n_examples}};
}

struct State {
  int64_t step = 0;
  std::string sampler;  // BatchSampler::to_json
  std::vector<double> losses;
  int64_t tokens = 0;  // over steps 1..step
  double seconds = 0;  // training time of steps 1..step, over the runs that made them
};

// Writes the checkpoint directory next to the live one and swaps it in.
void save_checkpoint(const std::string& out, LoraSet& lora, const AdamW& opt, const State& st,
                     const Json& options, const AdapterMeta& meta) {
  write_checkpoint_dir(out, [&](const std::string& tmp) {
    save_adapter(tmp, lora, meta);
    opt.save(tmp + "/optimizer.safetensors");
    Json j = {{"step", st.step},     {"sampler", Json::parse(st.sampler)},
              {"losses", st.losses}, {"options", options},
              {"tokens", st.tokens}, {"seconds", st.seconds}};
    write_file_atomic(tmp + "/trainer_state.json", j.dump(1) + "\n");
  });
}

}  // namespace

void set_finetune_step_hook(std::function<void(int64_t)> hook) {
  step_hook() = std::move(hook);
}

FinetuneResult finetune(const LlamaModel& model, LoraSet& lora, const std::vector<TrainExample>& data,
                        const FinetuneOptions& o, const AdapterMeta& meta, const std::string& out) {
  if (data.empty()) fail("finetune: no training examples");
  if (o.steps <= 0) fail("finetune: steps must be positive, got {}", o.steps);
  if (o.micro_batch <= 0 || o.batch <= 0 || o.batch % o.micro_batch != 0)
    fail("finetune: batch {} must be a positive multiple of micro_batch {}", o.batch, o.micro_batch);
  if (o.schedule != "constant" && o.schedule != "cosine")
    fail("finetune: schedule '{}' is not one of constant, cosine", o.schedule);
  fs::create_directories(out);
  const Json options = options_json(o, lora.config(), int64_t(data.size()));
  const std::vector<ParamRef> params = params_of(lora);
  AdamW adam(AdamWConfig{o.lr, 0.9, 0.999, 1e-8, o.weight_decay});
  BatchSampler sampler(int64_t(data.size()), o.micro_batch, o.seed);
  State st;
  FinetuneResult res;
  if (const std::string ck = find_checkpoint_dir(out); !ck.empty()) {
    const std::string state_path = ck + "/trainer_state.json";
    const Json j = parse_json_file(state_path);
    try {
      if (j.at("options") != options)
        fail("this checkpoint was made with other options ({}); use another --out or the same options",
             j.at("options").dump());
      st.step = j.at("step").get<int64_t>();
      st.losses = j.at("losses").get<std::vector<double>>();
      st.sampler = j.at("sampler").dump();
      st.tokens = j.value("tokens", int64_t(0));
      st.seconds = j.value("seconds", 0.0);
      if (st.step < 0 || st.step > o.steps || int64_t(st.losses.size()) != st.step)
        fail("step {} with {} losses does not fit a run of {} steps", st.step, st.losses.size(), o.steps);
    } catch (const Error& e) {
      fail("{}: {}", state_path, e.what());
    } catch (const std::exception& e) {
      fail("{}: malformed training state: {}", state_path, e.what());
    }
    LoraSet saved = load_adapter(ck, model, meta.base_fingerprint);
    auto dst = lora.entries();
    auto src = saved.entries();
    for (size_t i = 0; i < dst.size(); ++i) {
      dst[i].adapter->A = src[i].adapter->A;
      dst[i].adapter->B = src[i].adapter->B;
      dst[i].adapter->beta_a = src[i].adapter->beta_a;
      dst[i].adapter->beta_b = src[i].adapter->beta_b;
    }
    adam.load(ck + "/optimizer.safetensors", params);
    sampler.restore_json(st.sampler, state_path);
    res.resumed_from = st.step;
    if (!o.quiet) fmt::print(stderr, "resuming from {} at step {}\n", ck, st.step);
  }
  LlamaTrainer trainer(model, lora, TrainerOptions{o.recompute});
  const int accum = o.batch / o.micro_batch;
  const int64_t warmup = warmup_steps_from_ratio(o.steps, o.warmup_ratio);
  Progress bar("finetune", uint64_t(o.steps), "tok", o.quiet);
  bar.add(uint64_t(st.step), 0);
  Timer timer;
  const double seconds_before = st.seconds;
  while (st.step < o.steps) {
    lora.zero_grad();
    double loss = 0;
    int64_t tokens = 0;
    for (int m = 0; m < accum; ++m) {
      TrainBatch b;
      for (int64_t i : sampler.next()) b.add(data[size_t(i)].tokens, data[size_t(i)].labels);
      const int64_t nt = b.n_targets();
      if (nt == 0) continue;  // every target truncated away: no loss, no gradient (as HF would give 0/0)
      // HF Trainer (transformers 4.3x, qlora's): each micro-batch's mean loss divided by the accumulation.
      const float scale = 1.0f / (float(nt) * float(accum));
      const LossSum l = trainer.forward_backward(b, scale, subkey(o.seed, uint64_t(st.step * accum + m)));
      loss += l.mean() / accum;
      tokens += int64_t(b.tokens.size());
    }
    const double gnorm = o.max_grad_norm > 0 ? clip_grad_norm(params, o.max_grad_norm) : 0.0;
    if (!std::isfinite(loss) || !std::isfinite(gnorm)) {
      const std::string ck = find_checkpoint_dir(out);
      fail("finetune: the loss diverged at step {} (loss {}, gradient norm {}); {}", st.step + 1, loss, gnorm,
           ck.empty() ? "no checkpoint was written yet" : "the last good checkpoint is kept in " + ck);
    }
    const double lr = o.lr * (o.schedule == "cosine" ? cosine_with_warmup(st.step, warmup, o.steps)
                                                     : constant_with_warmup(st.step, warmup));
    adam.step(params, lr);
    ++st.step;
    st.losses.push_back(loss);
    res.tokens += tokens;
    st.tokens += tokens;
    bar.set_note(fmt::format("loss {:.4f}", loss));
    bar.add(1, uint64_t(tokens));
    if (st.step % o.save_every == 0 || st.step == o.steps) {
      st.sampler = sampler.to_json();
      st.seconds = seconds_before + timer.seconds();
      save_checkpoint(out, lora, adam, st, options, meta);
    }
    if (step_hook()) step_hook()(st.step);
  }
  bar.finish();
  save_adapter(out, lora, meta);
  res.seconds = timer.seconds();
  res.total_seconds = seconds_before + res.seconds;
  res.total_tokens = st.tokens;
  res.steps = st.step;
  res.losses = st.losses;
  res.last_loss = st.losses.empty() ? 0.0 : st.losses.back();
  return res;
}

}  // namespace lowbit

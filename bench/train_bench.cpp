// Fine-tuning step benchmark: lowbit's LoRA / QLoRA training step (LlamaTrainer::forward_backward over the
// micro-batches of one optimiser step, global-norm clipping and AdamW, as train/finetune.cpp's loop runs
// them, without its checkpoint I/O), timed in-process. Prints training tokens/s (median over the timed steps;
// the first step is a warm-up and is excluded), peak RSS, and the achieved GFLOP/s against an estimate of the
// step's FLOPs and against OpenBLAS sgemm measured in this run (the compute bound).
// tools/bench_train_torch.py runs the same fine-tune in PyTorch eager; bench/train_vs_torch.sh puts the two
// side by side.
//
//   train_bench MODEL [--method qlora|lora|ir-qlora] [--data FILE | --tokens FILE] [--batch 16]
//       [--micro-batch 4] [--seq-len 512] [--rank 64] [--alpha 16] [--steps 3] [--no-recompute]
//       [--threads 0] [--setup cli|lean] [--dump-tokens FILE [--dump-only]] [--no-peak]
//
// Data: --data tokenizes a prefix of a text file with the model's tokenizer (default: the calibration text)
// into `batch` windows of seq_len tokens, as text_file_examples cuts them (labels = next token, none at a
// window's end); --tokens reads such windows back as raw little-endian int32 (batch · seq_len of them), so a
// model without a tokenizer (lowbit synth) and the PyTorch script train on the same ids. Every step trains
// on the same `batch` windows: a step's cost does not depend on the ids. --dump-tokens writes the windows
// used; with --dump-only that is all it does (only MODEL's tokenizer is loaded).
//
// --setup cli (default) prepares the base exactly as `lowbit finetune` does (keep_f32_weights, then the
// method's base): for qlora that widens every linear to f32 before quantizing it, which sets the process's
// peak RSS on a large model. --setup lean quantizes first, so only the head is widened. The peak of the
// training steps alone (VmHWM after resetting it through /proc/self/clear_refs) is printed beside the
// process peak.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>

#include "bench_util.h"
#include "core/error.h"
#include "core/mmap.h"
#include "core/paths.h"
#include "core/progress.h"
#include "core/rng.h"
#include "io/tokenizer.h"
#include "train/data.h"
#include "train/llama_train.h"
#include "train/optim.h"
#include "train/qlora.h"

using namespace lowbit;

namespace {

// Linux: writing "5" to clear_refs resets the peak RSS (VmHWM) to the current RSS (proc(5)). Returns false
// where that is not allowed; the training-phase peak is then not reported.
bool reset_peak_rss() {
  std::FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (!f) return false;
  const bool ok = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

// A field of /proc/self/status in bytes ("VmHWM", "VmRSS"), 0 when absent.
uint64_t proc_status_bytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return uint64_t(std::stoull(line.substr(field.size() + 1))) * 1024;
  return 0;
}

struct Args {
  std::string model, method = "qlora", data, tokens, dump_tokens, setup = "cli";
  int batch = 16, micro_batch = 4, seq_len = 512, rank = 64, steps = 3, threads = 0;
  double alpha = 16;
  bool recompute = true, peak = true, dump_only = false;
};

Args parse(int argc, char** argv) {
  Args a;
  std::map<std::string, std::string*> str = {{"--method", &a.method},
                                             {"--data", &a.data},
                                             {"--tokens", &a.tokens},
                                             {"--dump-tokens", &a.dump_tokens},
                                             {"--setup", &a.setup}};
  std::map<std::string, int*> num = {{"--batch", &a.batch},     {"--micro-batch", &a.micro_batch},
                                     {"--seq-len", &a.seq_len}, {"--rank", &a.rank},
                                     {"--steps", &a.steps},     {"--threads", &a.threads}};
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--no-recompute") {
      a.recompute = false;
    } else if (k == "--dump-only") {
      a.dump_only = true;
    } else if (k == "--no-peak") {
      a.peak = false;
    } else if (k == "--alpha" && i + 1 < argc) {
      a.alpha = std::stod(argv[++i]);
    } else if (str.count(k) && i + 1 < argc) {
      *str[k] = argv[++i];
    } else if (num.count(k) && i + 1 < argc) {
      *num[k] = std::stoi(argv[++i]);
    } else if (k.rfind("--", 0) != 0 && a.model.empty()) {
      a.model = k;
    } else {
      fail("unknown or incomplete argument '{}'", k);
    }
  }
  if (a.model.empty()) fail("no MODEL given");
  if (a.batch <= 0 || a.micro_batch <= 0 || (a.batch % a.micro_batch && !a.dump_only))
    fail("--batch {} must be a positive multiple of --micro-batch {}", a.batch, a.micro_batch);
  if (a.steps < 1 || a.seq_len < 2 || a.rank < 1) fail("--steps, --seq-len and --rank must be positive");
  if (a.setup != "cli" && a.setup != "lean") fail("--setup must be cli or lean");
  if (a.dump_only && (a.dump_tokens.empty() || !a.tokens.empty()))
    fail("--dump-only needs --dump-tokens FILE and tokenizes --data");
  check_finetune_method(a.method);
  return a;
}

// `batch` windows of seq_len tokens from a prefix of the text: as much of its start as yields them (the
// whole file would cost a tokenizer's transient memory that the training run does not need).
std::vector<int32_t> tokenize_windows(const std::string& path, const Tokenizer& tok, int batch, int seq_len) {
  const std::string text = read_file(path);
  const size_t need = size_t(batch) * size_t(seq_len);
  for (size_t bytes = need * 8;; bytes *= 2) {
    std::vector<int32_t> ids = tok.encode_with_bos(std::string_view(text).substr(0, bytes));
    if (ids.size() >= need) return std::vector<int32_t>(ids.begin(), ids.begin() + ptrdiff_t(need));
    if (bytes >= text.size()) fail("{}: {} tokens, fewer than {} x {}", path, ids.size(), batch, seq_len);
  }
}

std::vector<int32_t> read_tokens(const std::string& path, size_t need) {
  const std::string raw = read_file(path);
  if (raw.size() != need * 4) fail("{}: {} bytes, expected {} int32 tokens", path, raw.size(), need);
  std::vector<int32_t> ids(need);
  std::memcpy(ids.data(), raw.data(), raw.size());
  return ids;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    set_num_threads(a.threads);
    const SearchPaths sp = find_search_paths();
    const std::string path = resolve_model_path(a.model, sp);
    Timer setup_t;
    // Data: batch windows, labels = the next token inside the window (text_windows' convention).
    std::vector<int32_t> ids;
    if (!a.tokens.empty()) {
      ids = read_tokens(a.tokens, size_t(a.batch) * size_t(a.seq_len));
    } else {
      const std::string data = a.data.empty() ? resolve_data_path("calib/testbed-calib.txt", sp) : a.data;
      ids = tokenize_windows(data, *load_tokenizer_for_model(path), a.batch, a.seq_len);
    }
    if (!a.dump_tokens.empty()) {
      write_file_atomic(a.dump_tokens, ids.data(), ids.size() * sizeof(int32_t));
      fmt::print("wrote {} x {} tokens to {}\n", a.batch, a.seq_len, a.dump_tokens);
      if (a.dump_only) return 0;
    }
    LlamaModel model(load_checkpoint(path));
    const ModelConfig& c = model.config();
    for (int32_t t : ids)
      if (t < 0 || t >= c.n_vocab) fail("token id {} out of the model's vocabulary ({})", t, c.n_vocab);
    const std::vector<TrainExample> windows =
        text_windows(ids, a.seq_len, a.tokens.empty() ? "data" : a.tokens);  // exactly `batch` windows
    release_free_memory();

    if (a.setup == "cli") {  // cmd_finetune.cpp's order
      model.keep_f32_weights();
      prepare_finetune_base(model, a.method, true);
    } else {
      prepare_finetune_base(model, a.method, true);
      model.keep_f32_weights();
    }
    LoraConfig lc;
    lc.rank = a.rank;
    lc.alpha = a.alpha;
    lc.iec = method_uses_iec(a.method);
    LoraSet lora(model, lc);
    std::vector<ParamRef> params;
    for (auto& e : lora.entries()) {
      LoraAdapter& ad = *e.adapter;
      params.push_back({e.module + ".lora_A", ad.A.data(), ad.dA.data(), int64_t(ad.A.size())});
      params.push_back({e.module + ".lora_B", ad.B.data(), ad.dB.data(), int64_t(ad.B.size())});
      if (ad.iec) {
        params.push_back({e.module + ".A_scale", &ad.beta_a, &ad.dbeta_a, 1});
        params.push_back({e.module + ".B_scale", &ad.beta_b, &ad.dbeta_b, 1});
      }
    }
    const double setup_s = setup_t.seconds();
    // Anonymous memory (the program's buffers) and file-backed pages (the checkpoint's mapping, counted in
    // RSS while resident) apart: they are freed by different means.
    const uint64_t rss_setup = proc_status_bytes("VmRSS"), peak_setup = peak_rss_bytes();
    const uint64_t anon_setup = proc_status_bytes("RssAnon"), file_setup = proc_status_bytes("RssFile");
    const bool phase_peak = reset_peak_rss();

    // One optimiser step as finetune() takes it (HF Trainer's loss scaling, clipping at qlora's 0.3, AdamW
    // at a constant 2e-4).
    LlamaTrainer trainer(model, lora, TrainerOptions{a.recompute});
    AdamW adam(AdamWConfig{2e-4, 0.9, 0.999, 1e-8, 0.0});
    const int accum = a.batch / a.micro_batch;
    std::vector<double> step_s;
    double last_loss = 0;
    const int64_t tokens_per_step = int64_t(a.batch) * a.seq_len;
    for (int s = 0; s <= a.steps; ++s) {  // step 0: warm-up, not timed
      Timer t;
      lora.zero_grad();
      double loss = 0;
      for (int m = 0; m < accum; ++m) {
        TrainBatch b;
        for (int i = 0; i < a.micro_batch; ++i) {
          const TrainExample& ex = windows[size_t(m * a.micro_batch + i)];
          b.add(ex.tokens, ex.labels);
        }
        const float scale = 1.0f / (float(b.n_targets()) * float(accum));
        loss += trainer.forward_backward(b, scale, subkey(42, uint64_t(s * accum + m))).mean() / accum;
      }
      clip_grad_norm(params, 0.3);
      adam.step(params, 2e-4);
      const double sec = t.seconds();
      if (s > 0) step_s.push_back(sec);
      last_loss = loss;
      fmt::print(stderr, "step {}{}: {:.2f} s, loss {:.4f}\n", s, s == 0 ? " (warm-up)" : "", sec, loss);
    }
    // After the reset, ru_maxrss reports the peak since the reset (the kernel keeps one high-water mark), so
    // the process's peak is the larger of the two.
    const uint64_t peak = std::max(peak_setup, peak_rss_bytes());
    const uint64_t peak_train = phase_peak ? proc_status_bytes("VmHWM") : 0;
    const double sec = median(step_s);
    const double tps = double(tokens_per_step) / sec;

    // FLOPs of one step. P = Σ over block linears of in·out; Pa = Σ over adapters of r·(in + out); n tokens;
    // m labelled rows (the head runs on those only); attention per layer and sequence of T tokens: QKᵀ and
    // PV over the causal triangle, A = 2·2·hd·H·T(T+1)/2. The base is frozen, so its backward forms the
    // input gradient only (2P per token, no weight gradient); an adapter's backward forms dA, dB and its
    // input gradient (4Pa); attention's backward is two matmuls per forward one (2A); the head's backward
    // its input gradient (2Vd). Recompute adds a second forward of the blocks (not the head).
    //   executed = (4 + 2rc)·P·n + (6 + 2rc)·Pa·n + (3 + rc)·A·L·S + 4·V·d·m
    // The usual "6N" convention (Kaplan et al. 2020; PaLM's MFU; 8N with recompute) counts a full backward,
    // weight gradients included: (6 + 2rc)·(P + Pa + V·d)·n + (3 + rc)·A·L·S. It is printed for comparison;
    // with a frozen base it overstates the work by about half.
    double P = 0, Pa = 0;
    for (int l = 0; l < c.n_layer; ++l)
      for (LinearKind k : kAllLinears) {
        const Linear& w = model.linear(l, k);
        P += double(w.rows()) * double(w.cols());
        if (const LoraAdapter* ad = lora.find(l, k)) Pa += double(ad->r) * double(ad->in + ad->out);
      }
    const double n = double(tokens_per_step), T = a.seq_len, rc = a.recompute ? 1 : 0;
    const double m = double(a.batch) * (a.seq_len - 1);
    const double attn = double(c.n_layer) * a.batch * 2.0 * 2.0 * c.head_dim * c.n_head * T * (T + 1) / 2;
    const double Vd = double(c.n_vocab) * c.n_embd;
    const double executed = (4 + 2 * rc) * P * n + (6 + 2 * rc) * Pa * n + (3 + rc) * attn + 4 * Vd * m;
    const double convention = (6 + 2 * rc) * (P + Pa + Vd) * n + (3 + rc) * attn;
    const double gflops = executed / sec / 1e9;
    const double sgemm = a.peak ? bench::sgemm_peak_gflops(a.micro_batch * a.seq_len, c.n_ff, c.n_embd) : 0;

    fmt::print("model {}  method {}  threads {}  OpenBLAS {}\n", path, a.method, num_threads(),
               blas_kernels_description());
    fmt::print("batch {} (micro-batch {} x {} tokens), rank {}, alpha {}, recompute {}, setup {}\n", a.batch,
               a.micro_batch, a.seq_len, a.rank, a.alpha, a.recompute ? "on" : "off", a.setup);
    fmt::print(
        "setup {:.1f} s (load, data, base, adapters); RSS after setup {} (anonymous {}, file-backed {})\n",
        setup_s, format_bytes(rss_setup), format_bytes(anon_setup), format_bytes(file_setup));
    std::string steps_list;
    for (double x : step_s) steps_list += fmt::format("{}{:.2f}", steps_list.empty() ? "" : " ", x);
    fmt::print("step {:.2f} s (median of {}: {}), last loss {:.4f}\n", sec, step_s.size(), steps_list,
               last_loss);
    fmt::print("train {:.1f} tokens/s\n", tps);
    fmt::print("FLOPs per step: {:.1f} GFLOP executed (frozen base), {:.1f} GFLOP by the 6N/8N convention\n",
               executed / 1e9, convention / 1e9);
    if (sgemm > 0)
      fmt::print(
          "achieved {:.1f} GFLOP/s; OpenBLAS sgemm {:.1f} GFLOP/s in this run -> {:.0f}% (bound {:.0f} "
          "tokens/s)\n",
          gflops, sgemm, 100 * gflops / sgemm, sgemm * 1e9 / (executed / n));
    else
      fmt::print("achieved {:.1f} GFLOP/s\n", gflops);
    fmt::print("peak RSS {} (after setup {}{})\n", format_bytes(peak), format_bytes(peak_setup),
               phase_peak ? fmt::format("; training steps alone {}", format_bytes(peak_train)) : "");
    // One line for bench/train_vs_torch.sh.
    fmt::print(
        "RESULT impl=lowbit tok_s={:.2f} step_s={:.3f} peak_rss={} train_peak_rss={} gflops={:.2f} "
        "sgemm_gflops={:.2f} loss={:.4f}\n",
        tps, sec, peak, peak_train, gflops, sgemm, last_loss);
  } catch (const std::exception& e) {
    fmt::print(stderr, "train_bench: error: {}\n", e.what());
    return 1;
  }
}

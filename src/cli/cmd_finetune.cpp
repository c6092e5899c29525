// lowbit finetune MODEL --method qlora|ir-qlora|lora --data FILE --steps N --out DIR: LoRA fine-tuning on CPU
// (train/finetune.h), QLoRA's recipe by default. The adapter lands in DIR in PEFT's layout; `lowbit ppl/eval
// MODEL --adapter DIR` evaluates base + adapter.
#include <fmt/format.h>

#include <filesystem>

#include "cli/common.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/sys.h"
#include "train/finetune.h"
#include "train/qlora.h"

namespace lowbit::cli {

void add_finetune(CLI::App& app, Global& g, Commands& out) {
  auto* sub = app.add_subcommand("finetune", "LoRA fine-tuning: QLoRA, IR-QLoRA or plain LoRA, on CPU");
  sub->option_defaults()->always_capture_default();
  struct Opts {
    std::string model, method = "qlora", data, format, out;
    int seq_len = 512, source_max_len = 384, target_max_len = 128;
    bool train_on_source = false, no_recompute = false;
    std::vector<std::string> targets;
    LoraConfig lora;
    FinetuneOptions ft;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("model", o->model, "Base model (HF directory or a name under the models dir)")->required();
  sub->add_option(
         "--method", o->method,
         "qlora: NF4 double-quantized base + LoRA; ir-qlora: NF4 with ICQ + LoRA with IEC; lora: the base "
         "as loaded + LoRA")
      ->check(CLI::IsMember({"qlora", "ir-qlora", "lora"}));
  sub->add_option("--data", o->data, "Training data: Alpaca JSON/JSONL, or a text file (--format text)")
      ->required();
  sub->add_option("--format", o->format, "alpaca or text (default: text for .txt files, else alpaca)")
      ->check(CLI::IsMember({"alpaca", "text"}));
  sub->add_option("--out", o->out, "Output directory: the adapter, and checkpoint/ to resume from")
      ->required();
  sub->add_option("--steps", o->ft.steps, "Optimiser steps")->check(at_least(1));
  sub->add_option("--batch", o->ft.batch, "Examples per optimiser step")->check(at_least(1));
  sub->add_option("--micro-batch", o->ft.micro_batch, "Examples per forward/backward (divides --batch)")
      ->check(at_least(1));
  sub->add_option("--lr", o->ft.lr, "Peak learning rate")->check(CLI::PositiveNumber);
  sub->add_option("--schedule", o->ft.schedule, "constant or cosine, after linear warmup")
      ->check(CLI::IsMember({"constant", "cosine"}));
  sub->add_option("--warmup-ratio", o->ft.warmup_ratio, "Warmup steps as a fraction of --steps")
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--max-grad-norm", o->ft.max_grad_norm, "Clip the global gradient norm (0 = off)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--weight-decay", o->ft.weight_decay, "AdamW weight decay")->check(CLI::NonNegativeNumber);
  sub->add_option("--seed", o->ft.seed, "Data order, dropout and adapter initialisation");
  sub->add_option("--save-every", o->ft.save_every, "Checkpoint every this many steps")->check(at_least(1));
  sub->add_option("--rank", o->lora.rank, "LoRA rank r")->check(at_least(1));
  sub->add_option("--alpha", o->lora.alpha, "LoRA alpha (the update is scaled by alpha / r)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--dropout", o->lora.dropout, "LoRA dropout")->check(CLI::Range(0.0, 0.999));
  sub->add_option("--targets", o->targets,
                  "Linears to adapt (default all: q_proj,k_proj,v_proj,o_proj,"
                  "gate_proj,up_proj,down_proj)")
      ->delimiter(',');
  sub->add_option("--seq-len", o->seq_len, "Window length for --format text")->check(at_least(2));
  sub->add_option("--source-max-len", o->source_max_len, "Alpaca: prompt tokens kept")->check(at_least(1));
  sub->add_option("--target-max-len", o->target_max_len, "Alpaca: response tokens kept")->check(at_least(1));
  sub->add_flag("--train-on-source", o->train_on_source, "Alpaca: also train on the prompt's tokens");
  sub->add_flag("--no-recompute", o->no_recompute,
                "Keep every layer's activations instead of recomputing them (faster, more memory)");
  out.emplace_back(sub, [&g, o]() {
    LoadedModel lm = load_model(g, o->model);
    const std::string fmt_name = !o->format.empty()                                     ? o->format
                                 : std::filesystem::path(o->data).extension() == ".txt" ? "text"
                                                                                        : "alpaca";
    Timer tt;
    std::vector<TrainExample> data;
    if (fmt_name == "text") {
      data = text_file_examples(o->data, *lm.tokenizer, o->seq_len);
      fmt::print(stderr,
                 "note: fine-tuning on {} as plain text ({} windows of {} tokens); the study fine-tunes on "
                 "Alpaca. {}\n",
                 o->data, data.size(), o->seq_len, alpaca_missing_message(g.paths().data_dir));
    } else {
      AlpacaOptions ao{o->source_max_len, o->target_max_len, o->train_on_source};
      data = alpaca_examples(read_alpaca_file(o->data), *lm.tokenizer, ao);
      fmt::print(stderr, "data: {} ({} Alpaca records)\n", o->data, data.size());
    }
    int64_t n_tokens = 0, n_targets = 0;
    for (const auto& ex : data) n_tokens += int64_t(ex.tokens.size()), n_targets += count_loss_tokens(ex);
    fmt::print(stderr, "      {} tokens, {} trained on; tokenized in {:.1f}s\n", n_tokens, n_targets,
               tt.seconds());

    o->lora.iec = method_uses_iec(o->method);
    o->lora.seed = o->ft.seed;
    if (!o->targets.empty()) {
      o->lora.targets.clear();
      for (const std::string& t : o->targets) {
        LinearKind k;
        if (!linear_from_target_name(t, &k))
          fail("--targets: '{}' is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj",
               t);
        o->lora.targets.push_back(k);
      }
    }
    o->ft.recompute = !o->no_recompute;
    const std::string fingerprint = base_fingerprint(lm.model->checkpoint());
    // The base first (NF4 straight from the stored weights), then the head (and a dense base), read every
    // step, widened once; the other order would widen every block weight to f32 before quantizing it (1B:
    // +3.6 GiB).
    prepare_finetune_base(*lm.model, o->method);
    lm.model->keep_f32_weights();
    LoraSet lora(*lm.model, o->lora);
    const FinetuneResult r =
        finetune(*lm.model, lora, data, o->ft, AdapterMeta{o->method, lm.path, fingerprint}, o->out);
    const int64_t done = r.steps - r.resumed_from;
    fmt::print(
        "{}: {} steps{} of {} examples, last loss {:.4f}; {} tokens in {:.1f}s ({:.0f} tok/s), peak RSS {}\n",
        o->method, r.steps,
        r.resumed_from ? fmt::format(" ({} after resuming at {})", done, r.resumed_from) : "", o->ft.batch,
        r.last_loss, r.tokens, r.seconds, r.seconds > 0 ? double(r.tokens) / r.seconds : 0.0,
        format_bytes(peak_rss_bytes()));
    fmt::print("adapter: {} (evaluate with: lowbit ppl {} --adapter {})\n", o->out, o->model, o->out);
    return 0;
  });
}

}  // namespace lowbit::cli

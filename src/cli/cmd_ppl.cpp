// lowbit ppl MODEL --dataset wikitext2,ptb,...: perplexity under the study's protocol (see
// eval/perplexity.h).
#include <fmt/format.h>

#include "cli/common.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/sys.h"
#include "eval/kld.h"
#include "eval/perplexity.h"
#include "eval/ppl_texts.h"

namespace lowbit::cli {

void add_ppl(CLI::App& app, Global& g, Commands& out) {
  auto* sub = app.add_subcommand("ppl", "Perplexity on WikiText2 / PTB / C4-sample / any text file");
  struct Opts {
    std::string model, kld_base;
    std::string adapter;
    std::vector<std::string> datasets{"wikitext2"};
    int seqlen = 2048, max_windows = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("model", o->model, "Model")->required();
  sub->add_option("-d,--dataset", o->datasets,
                  "wikitext2, ptb, ptb-new, c4-sample, or a text file path (comma-separated list allowed)")
      ->delimiter(',');
  sub->add_option("--seqlen", o->seqlen, "Window length in tokens")->check(CLI::Range(2, 1 << 20));
  sub->add_option("--max-windows", o->max_windows, "Evaluate at most this many windows (0 = all)")
      ->check(at_least(0));
  sub->add_flag("--json", o->json, "Print results as JSON on stdout");
  sub->add_option("--kld-base", o->kld_base,
                  "Also report KL divergence of MODEL's next-token distribution from this base model's");
  add_adapter_option(sub, o->adapter);
  out.emplace_back(sub, [&g, o]() {
    LoadedModel lm = load_model(g, o->model, true, o->adapter);
    std::unique_ptr<LlamaModel> base;
    if (!o->kld_base.empty()) {
      LoadedModel b = load_model(g, o->kld_base, false);
      if (b.model->config().n_vocab != lm.model->config().n_vocab)
        fail("--kld-base {}: vocabulary size {} differs from the model's {}", o->kld_base,
             b.model->config().n_vocab, lm.model->config().n_vocab);
      base = std::move(b.model);
    }
    Json results = Json::array();
    for (const std::string& ds : o->datasets) {
      EvalText et = build_eval_text(ds, g.paths());
      if (!et.note.empty()) fmt::print(stderr, "note: {}\n", et.note);
      Timer tt;
      std::vector<int32_t> ids = lm.tokenizer->encode_with_bos(et.text);
      const double tok_s = tt.seconds();
      PplOptions po;
      po.seqlen = o->seqlen;
      po.max_windows = o->max_windows;
      po.label = et.name;
      KldAccumulator kld;
      if (base) po.on_window = kld_window_hook(*base, o->seqlen, kld);
      PplResult r = perplexity(*lm.model, ids, po);
      const double tps = double(r.windows) * r.seqlen / r.seconds;
      Json files = Json::object();
      for (const auto& f : et.files) files[f] = sha256_file(f);
      Json j = {{"model", lm.path},
                {"dataset", et.name},
                {"ppl", r.ppl},
                {"nll_mean", r.nll_sum / (double(r.windows) * r.seqlen)},
                {"n_tokens", r.n_tokens},
                {"windows", r.windows},
                {"seqlen", r.seqlen},
                {"tokens_sha256_int32le", ids_sha256(ids)},
                {"tokenize_seconds", tok_s},
                {"seconds", r.seconds},
                {"tokens_per_second", tps},
                {"peak_rss_bytes", peak_rss_bytes()},
                {"threads", num_threads()},
                {"data_files", files}};
      if (!et.note.empty()) j["note"] = et.note;
      if (base) {
        auto k = kld.summary();
        j["kld"] = {{"base", o->kld_base},
                    {"positions", k.n},
                    {"mean", k.mean},
                    {"median", k.median},
                    {"p99", k.p99},
                    {"max", k.max},
                    {"top1_agreement", k.top1_agreement}};
        if (!o->json)
          fmt::print("{:<12} KLD vs {}: mean {:.6f}  median {:.6f}  p99 {:.6f}  top-1 agreement {:.2f}%\n",
                     et.name, o->kld_base, k.mean, k.median, k.p99, 100 * k.top1_agreement);
      }
      results.push_back(j);
      if (!o->json)
        fmt::print("{:<12} ppl {:.4f}  ({} tokens, {} windows of {}, {:.1f}s, {:.0f} tok/s, peak RSS {})\n",
                   et.name, r.ppl, r.n_tokens, r.windows, r.seqlen, r.seconds, tps,
                   format_bytes(peak_rss_bytes()));
    }
    if (o->json) fmt::print("{}\n", results.dump(2));
    return 0;
  });
}

}  // namespace lowbit::cli

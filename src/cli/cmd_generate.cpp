// lowbit generate MODEL --prompt P: stream a continuation (greedy by default) and report tokens/s.
#include <fmt/format.h>

#include <cstdio>

#include "cli/common.h"
#include "core/sys.h"
#include "model/sampler.h"

namespace lowbit::cli {

void add_generate(CLI::App& app, Global& g, Commands& out) {
  auto* sub = app.add_subcommand("generate", "Generate text from a prompt");
  struct Opts {
    std::string model, prompt;
    std::string adapter;
    int n = 64;
    SamplerOptions s;
    bool ids = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("model", o->model, "Model")->required();
  sub->add_option("-p,--prompt", o->prompt, "Prompt (BOS is prepended; empty = start from BOS)");
  sub->add_option("-n,--tokens", o->n, "Tokens to generate")->check(CLI::Range(1, 1 << 20));
  sub->add_option("--temperature", o->s.temperature, "0 = greedy")->check(CLI::Range(0.0, 100.0));
  sub->add_option("--top-p", o->s.top_p, "Nucleus sampling mass")->check(CLI::Range(0.0, 1.0));
  sub->add_option("--seed", o->s.seed, "Sampling seed");
  sub->add_flag("--ids", o->ids, "Also print the token ids");
  add_adapter_option(sub, o->adapter);
  out.emplace_back(sub, [&g, o]() {
    LoadedModel lm = load_model(g, o->model, true, o->adapter);
    const auto& c = lm.model->config();
    std::vector<int32_t> ids = lm.tokenizer->encode_with_bos(o->prompt);
    const int max_seq = int(ids.size()) + o->n;
    KVCache cache = lm.model->new_cache(max_seq);
    std::vector<float> logits(size_t(c.n_vocab));
    Sampler sampler(o->s);

    Timer t;
    lm.model->forward(ids, cache, logits.data(), int(ids.size()) - 1);
    const double prefill_s = t.seconds();
    const size_t n_prompt = ids.size();
    std::string shown = lm.tokenizer->decode(std::span(ids).subspan(0));
    fmt::print("{}", shown);
    std::fflush(stdout);
    t.reset();
    int generated = 0;
    for (int i = 0; i < o->n; ++i) {
      int32_t next = sampler.sample(logits.data(), c.n_vocab);
      ids.push_back(next);
      ++generated;
      std::string text =
          lm.tokenizer->decode(ids);  // decode the whole sequence: SentencePiece spacing is contextual
      if (text.size() > shown.size() && text.compare(0, shown.size(), shown) == 0)
        fmt::print("{}", text.substr(shown.size()));
      shown = text;
      std::fflush(stdout);
      if (lm.tokenizer->is_eos(next) || i + 1 == o->n) break;
      int32_t one[1] = {next};
      lm.model->forward(one, cache, logits.data());
    }
    const double decode_s = t.seconds();
    fmt::print("\n");
    if (o->ids) {
      for (size_t i = 0; i < ids.size(); ++i) fmt::print("{}{}", i ? " " : "", ids[i]);
      fmt::print("\n");
    }
    std::fflush(stdout);
    fmt::print(
        stderr, "prompt {} tok in {:.3f}s ({:.1f} tok/s), generated {} tok in {:.3f}s ({:.1f} tok/s)\n",
        n_prompt, prefill_s, double(n_prompt) / prefill_s, generated, decode_s, double(generated) / decode_s);
    return 0;
  });
}

}  // namespace lowbit::cli

// lowbit tokenize MODEL (--text T | --file F | --dataset NAME): token ids, count and sha256.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/common.h"
#include "core/mmap.h"
#include "eval/ppl_texts.h"

namespace lowbit::cli {

void add_tokenize(CLI::App& app, Global& g, Commands& out) {
  auto* sub = app.add_subcommand("tokenize", "Tokenize text with a model's tokenizer");
  struct Opts {
    std::string model, text, file, dataset;
    bool no_bos = false, json = false, ids = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("model", o->model, "Model (its tokenizer is used)")->required();
  auto* src = sub->add_option_group("source");
  src->add_option("--text", o->text, "Text to tokenize");
  src->add_option("--file", o->file, "File to tokenize (raw bytes)");
  src->add_option("--dataset", o->dataset, "Evaluation text: wikitext2, ptb, ptb-new, c4-sample");
  src->require_option(1);
  sub->add_flag("--no-bos", o->no_bos, "Do not prepend BOS");
  sub->add_flag("--ids", o->ids, "Print every id (default: first 32)");
  sub->add_flag("--json", o->json, "Print JSON");
  out.emplace_back(sub, [&g, o]() {
    const std::string path = resolve_model_path(o->model, g.paths());
    auto tok = load_tokenizer_for_model(path);
    std::string text;
    if (!o->dataset.empty())
      text = build_eval_text(o->dataset, g.paths()).text;
    else if (!o->file.empty())
      text = read_file(o->file);
    else
      text = o->text;
    std::vector<int32_t> ids = o->no_bos ? tok->encode(text) : tok->encode_with_bos(text);
    const std::string sha = ids_sha256(ids);
    if (o->json) {
      Json j = {{"n", ids.size()}, {"sha256_int32le", sha}, {"ids", ids}};
      fmt::print("{}\n", j.dump());
      return 0;
    }
    size_t show = o->ids ? ids.size() : std::min<size_t>(ids.size(), 32);
    fmt::print("{}{}\n", fmt::join(ids.begin(), ids.begin() + long(show), " "),
               show < ids.size() ? " ..." : "");
    fmt::print("n {}  sha256(int32le) {}\n", ids.size(), sha);
    return 0;
  });
}

}  // namespace lowbit::cli

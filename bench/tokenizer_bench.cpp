// Tokenization throughput on WikiText-2 test (1.3 MB) for each tokenizer kind. Loading is not timed.
#include <benchmark/benchmark.h>

#include "core/paths.h"
#include "eval/ppl_texts.h"
#include "io/tokenizer.h"

namespace {

using namespace lowbit;

const std::string& wikitext() {
  static std::string t = build_eval_text("wikitext2", find_search_paths()).text;
  return t;
}

void run(benchmark::State& state, const Tokenizer& tok) {
  const std::string& text = wikitext();
  size_t n = 0;
  for (auto _ : state) {
    auto ids = tok.encode(text);
    n = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
  state.counters["tokens"] = double(n);
}

void BM_SentencePiece(benchmark::State& state) {
  static auto tok = load_tokenizer_for_model(resolve_model_path("testbed-25m", find_search_paths()));
  run(state, *tok);
}
void BM_Llama3TokenizerJson(benchmark::State& state) {
  static auto tok =
      load_bpe_json_tokenizer(find_search_paths().models_dir + "/tokenizers/llama3/tokenizer.json");
  run(state, *tok);
}
void BM_Llama3Tiktoken(benchmark::State& state) {
  static auto tok =
      load_tiktoken_tokenizer(find_search_paths().models_dir + "/tokenizers/llama3/tokenizer.model");
  run(state, *tok);
}

BENCHMARK(BM_SentencePiece)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Llama3TokenizerJson)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Llama3Tiktoken)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

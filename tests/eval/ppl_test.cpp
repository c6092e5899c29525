// Full-precision perplexity of the four evaluation texts vs the PyTorch references (acceptance: within
// 0.05%). Each text is scored in full (all windows), as the reference was.
#include <gtest/gtest.h>

#include "core/error.h"
#include "eval/perplexity.h"
#include "eval/ppl_texts.h"
#include "io/tokenizer.h"
#include "model/llama.h"
#include "test_util.h"

namespace lowbit {
namespace {

// One test for the four texts, so ctest never runs two of these multi-threaded, minutes-long evaluations at
// once on a 2-core machine.
TEST(TestbedPpl, FourTextsMatchPyTorchReference) {
  const std::string mp = test::model_path("testbed-25m");
  LlamaModel model(load_checkpoint(mp));
  auto tok = load_tokenizer_for_model(mp);
  const Json& ref = test::testbed_refs();
  for (const std::string name : {"wikitext2", "ptb", "ptb-new", "c4-sample"}) {
    EvalText et = build_eval_text(name, test::paths());
    std::vector<int32_t> ids = tok->encode_with_bos(et.text);
    ASSERT_EQ(int64_t(ids.size()), ref["tokens"][name]["n"].get<int64_t>()) << name;
    PplOptions opt;
    opt.seqlen = ref["protocol"]["seqlen"].get<int>();
    opt.quiet = true;
    PplResult r = perplexity(model, ids, opt);
    const double want = ref["perplexity_fp32"][name].get<double>();
    EXPECT_NEAR(r.ppl, want, want * 5e-4) << name;  // the acceptance bound: 0.05%
    std::printf("%s: ppl %.5f (reference %.4f, rel diff %.2e)\n", name.c_str(), r.ppl, want,
                (r.ppl - want) / want);
  }
}

TEST(Perplexity, ProtocolOnTinyStream) {
  // 5 tokens, seqlen 2: two windows ([0,1], [2,3]); the 5th token is dropped; each window scores 1 token.
  LlamaModel m(load_checkpoint(test::model_path("stories260K/stories260K.bin")));
  std::vector<int32_t> ids = {1, 400, 401, 402, 403};
  std::vector<double> nll;
  PplOptions opt;
  opt.seqlen = 2;
  opt.quiet = true;
  PplResult r = perplexity(m, ids, opt);
  ASSERT_EQ(r.windows, 2);
  const int64_t V = m.config().n_vocab;
  double sum = 0;
  for (int w = 0; w < 2; ++w) {
    KVCache c = m.new_cache(2);
    std::vector<float> logits(size_t(2 * V));
    m.forward(std::span(ids).subspan(size_t(2 * w), 2), c, logits.data());
    sum +=
        -log_softmax_at_scalar(logits.data(), V, ids[size_t(2 * w + 1)]) * 2;  // mean over 1 token, times L=2
  }
  // perplexity() uses the SIMD log-softmax (float exps summed in double): each log-prob is within a few float
  // ulps (~4·2⁻²⁴) of the double oracle, so ppl agrees to ~1e-6 relative.
  EXPECT_NEAR(r.ppl, std::exp(sum / 4), 1e-6 * r.ppl);
  EXPECT_THROW(perplexity(m, std::span(ids).subspan(0, 1), opt), Error);
}

}  // namespace
}  // namespace lowbit

// Study definitions: presets, row expansion, and bad files failing on the key that is wrong.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "study/spec.h"
#include "test_util.h"

namespace lowbit {
namespace {

std::string error_of(const std::string& toml) {
  try {
    parse_study(toml, "bad.toml");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const char* kHead = R"(
name = "t"
models = ["testbed-25m"]
[perplexity]
datasets = ["wikitext2"]
)";

TEST(StudySpec, PresetsParseAndExpand) {
  const StudySpec q = load_study("quick");
  EXPECT_EQ(q.name, "quick");
  // fp16 + rtn {4,3,2} + gptq {4,3} + awq 4 + a token qlora
  ASSERT_EQ(q.rows.size(), 8u);
  EXPECT_TRUE(q.rows[0].baseline());
  EXPECT_EQ(q.rows[1].label(), "rtn w4 a16 g128");
  EXPECT_EQ(q.rows[4].quant.method, "gptq");
  EXPECT_EQ(q.rows[5].quant.method, "gptq");
  EXPECT_EQ(q.rows[5].quant.wbits, 3);
  EXPECT_EQ(q.rows[6].quant.method, "awq");
  EXPECT_EQ(q.task_limit, 20);
  EXPECT_EQ(q.rows[7].label(), "qlora w4 10 steps");
  EXPECT_EQ(q.row_tasks(q.rows[7]).back(), "mmlu");
  EXPECT_EQ(q.row_tasks(q.rows[1]).size(), 5u);  // MMLU on fp16 and qlora only
  const StudySpec p = load_study("paper");
  // fp16 + 3 methods x (3 group-128 + 4 per-channel), DB-LLM, then Table 2's nf4, qlora, ir-qlora, then
  // QuIP's three rows and its Hadamard variant, PB-LLM's 1.7- and 2-bit rows, BiLLM's row, SliM-LLM's two
  ASSERT_EQ(p.rows.size(), 35u);
  EXPECT_EQ(p.rows[32].label(), "billm w1 a16 g128");
  EXPECT_EQ(p.rows[34].label(), "slim w2 a16 g128");
  EXPECT_EQ(p.rows[30].label(), "pbllm w1 a16 g128 low_frac=0.9");
  EXPECT_EQ(p.rows[26].label(), "quip w4 a16 per-channel");
  EXPECT_EQ(p.rows[29].label(), R"(quip w2 a16 per-channel rotation="hadamard")");
  EXPECT_EQ(p.rows[4].label(), "rtn w8 a16 per-channel");
  EXPECT_EQ(p.rows[22].label(), "db-llm w2 a16 g128");
  EXPECT_EQ(p.rows[23].label(), "nf4 w4 a16 g64");
  EXPECT_EQ(p.rows[24].label(), "qlora w4 70 steps");
  EXPECT_EQ(p.rows[25].finetune->method, "ir-qlora");
  for (size_t i : {size_t(0), size_t(23), size_t(24), size_t(25)})
    EXPECT_EQ(p.row_tasks(p.rows[i]).back(), "mmlu") << i;
  for (size_t i = 1; i < 23; ++i) EXPECT_FALSE(p.rows[i].tasks.has_value()) << i;
  for (size_t i = 26; i < 30; ++i) EXPECT_FALSE(p.rows[i].tasks.has_value()) << i;
  EXPECT_NO_THROW(check_study_inputs(p, test::paths()));
  EXPECT_EQ(p.calib_nsamples, 128);
  EXPECT_EQ(p.ppl_max_windows, 0);
  for (const StudyRow& r : p.rows)
    if (!r.baseline() && !r.is_finetune()) EXPECT_EQ(r.quant.calib_file, "calib/testbed-calib.txt");
}

TEST(StudySpec, CommittedStudyFilesParse) {
  // studies/quant-core.toml: issue 3's table, 1 + 6 + 6 + 1 + 2 rows.
  const std::string dir =
      std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "studies";
  const StudySpec s = load_study(dir + "/quant-core.toml");
  EXPECT_EQ(s.rows.size(), 16u);
  EXPECT_EQ(s.rows[13].label(), "gptq w4 a16 g128 act_order");
  EXPECT_NO_THROW(check_study_inputs(s, test::paths()));
}

TEST(StudySpec, RowsExpandInOrderAndDeduplicate) {
  const StudySpec s = parse_study(std::string(kHead) + R"(
[[rows]]
method = ["rtn", "gptq"]
wbits = [4, 2]
group = [128, -1]
[[rows]]
method = "gptq"
wbits = 4
group = 128
act_order = true
[[rows]]
method = "rtn"
wbits = 4
group = 128
)",
                                  "t.toml");
  ASSERT_EQ(s.rows.size(), 9u);  // 8 + act-order; the last row repeats the first
  EXPECT_EQ(s.rows[0].label(), "rtn w4 a16 g128");
  EXPECT_EQ(s.rows[1].label(), "rtn w4 a16 per-channel");
  EXPECT_EQ(s.rows[2].label(), "rtn w2 a16 g128");
  EXPECT_EQ(s.rows[4].label(), "gptq w4 a16 g128");
  EXPECT_EQ(s.rows[8].label(), "gptq w4 a16 g128 act_order");
  EXPECT_TRUE(s.rows[8].quant.opt<bool>("act_order"));
  EXPECT_EQ(s.rows[8].settings.dump(),
            R"({"abits":16,"act_order":true,"group":128,"method":"gptq","wbits":4})");
  EXPECT_TRUE(s.kld);  // default with a perplexity dataset
}

TEST(StudySpec, BadFilesNameTheKey) {
  const std::string rows = "[[rows]]\nmethod = \"rtn\"\nwbits = 4\n";
  struct Case {
    std::string toml, expect;
  } cases[] = {
      {std::string(kHead) + "[[rows]]\nmethod = \"rnt\"\nwbits = 4\n",
       "rows[0].method: unknown method 'rnt'"},
      {std::string(kHead) + "[[rows]]\nmethod = \"gptq\"\nwbits = 9\n",
       "rows[0].wbits: wbits = 9 is not supported"},
      {std::string(kHead) + "[[rows]]\nmethod = \"gptq\"\nwbits = 1\n", "rows[0].wbits: wbits = 1"},
      {std::string(kHead) + "[[rows]]\nmethod = \"rtn\"\nwbits = 4\nabits = 12\n",
       "rows[0].abits: abits = 12: 16 (float activations), or 2..8"},
      {std::string(kHead) + "[[rows]]\nmethod = \"rtn\"\nwbits = 4\ngrop = 64\n",
       "rows[0].grop: unknown key 'grop' (did you mean 'group'?)"},
      {std::string(kHead) + "[[rows]]\nmethod = \"rtn\"\nwbits = 4\ngroup = 0\n", "rows[0].group: group = 0"},
      {std::string(kHead) + "[[rows]]\nmethod = \"rtn\"\nwbits = 4\nact_order = true\n",
       "rows[0]: --act-order applies to gptq only"},
      {std::string(kHead) + "[[rows]]\nmethod = \"rtn\"\n", "rows[0].wbits: missing"},
      {std::string(kHead) + "[[rows]]\nmethod = \"fp16\"\nwbits = 4\n", "rows[0].wbits: does not apply"},
      {std::string(kHead), "rows: missing"},
      {"models = [\"m\"]\n[perplexity]\ndatasets = [\"wikitext3\"]\n" + rows,
       "perplexity.datasets: unknown dataset 'wikitext3'"},
      {"models = [\"m\"]\n[tasks]\nnames = [\"piqa\", \"hellaswagg\"]\n" + rows,
       "tasks.names: unknown task 'hellaswagg'"},
      {"models = [\"m\"]\n[task]\nnames = [\"piqa\"]\n" + rows,
       "task: unknown key 'task' (did you mean 'tasks'?)"},
      {"models = [\"m\"]\n[perplexity]\ndatasets = [\"wikitext2\"]\nseqln = 128\n" + rows,
       "perplexity.seqln: unknown key"},
      {"models = [\"m\"]\n[perplexity]\ndatasets = [\"wikitext2\"]\nmax_windows = \"all\"\n" + rows,
       "perplexity.max_windows: expected an integer"},
      {"[perplexity]\ndatasets = [\"wikitext2\"]\n" + rows, "models: missing"},
      {"models = [\"m\"]\n" + rows, "perplexity: the study measures nothing"},
      {"models = [\"m\"\n", "bad.toml:"},  // TOML syntax error, with its position
  };
  for (const Case& c : cases) {
    const std::string e = error_of(c.toml);
    EXPECT_NE(e.find(c.expect), std::string::npos) << "got: " << e << "\nfor:\n" << c.toml;
    EXPECT_EQ(e.rfind("bad.toml", 0), 0u) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
}

TEST(StudySpec, FinetuneRowsTakeTheFinetuneSectionAndOverrideIt) {
  const StudySpec s = parse_study(std::string(kHead) + R"(
[tasks]
names = ["piqa"]
[finetune]
steps = 30
batch = 8
micro_batch = 2
lr = 1e-4
rank = 16
seq_len = 128
[[rows]]
method = "fp16"
tasks = ["piqa", "mmlu"]
[[rows]]
method = "rtn"
wbits = 4
[[rows]]
method = ["qlora", "ir-qlora"]
tasks = ["mmlu"]
[[rows]]
method = "lora"
steps = 5
dropout = 0.05
)",
                                  "t.toml");
  ASSERT_EQ(s.rows.size(), 5u);
  EXPECT_EQ(s.row_tasks(s.rows[0]), (std::vector<std::string>{"piqa", "mmlu"}));
  EXPECT_EQ(s.row_tasks(s.rows[1]), (std::vector<std::string>{"piqa"}));  // the study's
  EXPECT_FALSE(s.rows[1].is_finetune());
  const StudyRow& q = s.rows[2];
  ASSERT_TRUE(q.is_finetune());
  EXPECT_EQ(q.finetune->method, "qlora");
  EXPECT_EQ(q.quant.wbits, 4);
  EXPECT_EQ(q.settings["group"], 64);
  EXPECT_EQ(q.finetune->opt.steps, 30);
  EXPECT_EQ(q.finetune->opt.micro_batch, 2);
  EXPECT_EQ(q.finetune->lora.rank, 16);
  EXPECT_EQ(q.finetune->lora.alpha, 16);                   // LoraConfig's default
  EXPECT_EQ(q.finetune->opt.max_grad_norm, 0.3);           // FinetuneOptions' (QLoRA's) default
  EXPECT_EQ(q.finetune->data, "calib/testbed-calib.txt");  // plain text: Alpaca is not in shared/data
  EXPECT_FALSE(q.finetune->lora_config().iec);
  EXPECT_EQ(s.row_tasks(q), (std::vector<std::string>{"mmlu"}));
  EXPECT_EQ(q.settings["finetune"].dump(),
            R"({"alpha":16.0,"batch":8,"data":"calib/testbed-calib.txt","dropout":0.0,"format":"text",)"
            R"("lr":0.0001,"max_grad_norm":0.3,"micro_batch":2,"rank":16,"schedule":"constant","seed":42,)"
            R"("seq_len":128,"steps":30,"warmup_ratio":0.03,"weight_decay":0.0})");
  EXPECT_EQ(q.label(), "qlora w4 30 steps");
  const StudyRow& ir = s.rows[3];
  EXPECT_EQ(ir.finetune->method, "ir-qlora");
  EXPECT_TRUE(ir.finetune->lora_config().iec);
  EXPECT_EQ(ir.finetune->lora_config().seed, 42u);
  const StudyRow& l = s.rows[4];
  EXPECT_EQ(l.quant.wbits, 16);
  EXPECT_EQ(l.finetune->opt.steps, 5);  // the row's own
  EXPECT_EQ(l.finetune->lora.dropout, 0.05);
  EXPECT_EQ(l.finetune->opt.batch, 8);  // the study's
  EXPECT_FALSE(l.tasks.has_value());
  // A repeated row measures both task lists.
  const StudySpec d =
      parse_study(std::string(kHead) +
                      "[[rows]]\nmethod = \"qlora\"\ntasks = [\"piqa\"]\n"
                      "[[rows]]\nmethod = \"qlora\"\nwbits = 4\ntasks = [\"mmlu\", \"piqa\"]\n",
                  "d.toml");
  ASSERT_EQ(d.rows.size(), 1u);
  EXPECT_EQ(d.row_tasks(d.rows[0]), (std::vector<std::string>{"piqa", "mmlu"}));
  // Alpaca data keys the Alpaca settings instead of seq_len.
  const StudySpec a = parse_study(std::string(kHead) +
                                      "[finetune]\nformat = \"alpaca\"\ndata = \"alpaca/alpaca_data.json\"\n"
                                      "[[rows]]\nmethod = \"qlora\"\n",
                                  "a.toml");
  EXPECT_FALSE(a.rows[0].settings["finetune"].contains("seq_len"));
  EXPECT_EQ(a.rows[0].settings["finetune"]["source_max_len"], 384);
}

TEST(StudySpec, BadFinetuneAndTaskKeysNameTheKey) {
  const std::string q = "[[rows]]\nmethod = \"qlora\"\n";
  struct Case {
    std::string toml, expect;
  } cases[] = {
      {std::string(kHead) + "[[rows]]\nmethod = \"qlora\"\nwbits = 3\n",
       "rows[0].wbits: wbits = 3: qlora trains over a 4-bit NF4 base; leave wbits out or give 4"},
      {std::string(kHead) + "[[rows]]\nmethod = \"lora\"\nwbits = 4\n",
       "rows[0].wbits: wbits = 4: lora trains"},
      {std::string(kHead) + "[[rows]]\nmethod = \"ir-qlora\"\ngroup = 128\n",
       "rows[0].group: does not apply to a fine-tune row"},
      {std::string(kHead) + "[[rows]]\nmethod = \"qlora\"\nabits = 8\n",
       "rows[0].abits: abits = 8: a fine-tune row has 16-bit activations"},
      {std::string(kHead) + "[[rows]]\nmethod = \"qlora\"\ndouble_quant = false\n",
       "rows[0].double_quant: does not apply to a fine-tune row"},
      {std::string(kHead) + "[[rows]]\nmethod = \"qloar\"\n",
       "rows[0].method: unknown method 'qloar' (known: fp16, rtn, gptq, awq, nf4, quip, pbllm, billm, "
       "slim, db-llm, lora, "
       "qlora, ir-qlora)"},
      {std::string(kHead) + "[[rows]]\nmethod = \"rtn\"\nwbits = 4\nsteps = 10\n",
       "rows[0].steps: applies to fine-tune rows only"},
      {std::string(kHead) + "[[rows]]\nmethod = \"rtn\"\nwbits = 4\ntasks = [\"mmlux\"]\n",
       "rows[0].tasks: unknown task 'mmlux'"},
      {std::string(kHead) + "[[rows]]\nmethod = \"fp16\"\ntasks = \"\"\n", "rows[0].tasks: unknown task ''"},
      {std::string(kHead) + "[finetune]\nstepz = 3\n" + q,
       "finetune.stepz: unknown key 'stepz' (did you mean 'steps'?)"},
      {std::string(kHead) + "[finetune]\nsteps = 0\n" + q, "finetune.steps: 0 must be at least 1"},
      {std::string(kHead) + "[finetune]\nbatch = 16\nmicro_batch = 5\n" + q,
       "finetune.micro_batch: batch 16 must be a multiple of micro_batch 5"},
      {std::string(kHead) + "[finetune]\nformat = \"json\"\n" + q,
       "finetune.format: 'json' is not one of text, alpaca"},
      {std::string(kHead) + "[finetune]\nlr = -1\n" + q, "finetune.lr: -1 must be positive"},
      {std::string(kHead) + "[finetune]\nlr = \"fast\"\n" + q, "finetune.lr: expected a number"},
      {std::string(kHead) + "[finetune]\nwarmup_ratio = 2\n" + q,
       "finetune.warmup_ratio: 2 must be in [0, 1]"},
      {std::string(kHead) + "[finetune]\nschedule = \"linear\"\n" + q,
       "finetune.schedule: 'linear' is not one of constant, cosine"},
      {std::string(kHead) + "[finetune]\nseq_len = 1\n" + q, "finetune.seq_len: 1 must be at least 2"},
      {std::string(kHead) + "[[rows]]\nmethod = \"qlora\"\ndropout = 1.0\n",
       "rows[0].dropout: 1 must be in [0, 1)"},
      {std::string(kHead) + "[[rows]]\nmethod = \"lora\"\nrank = 0\n", "rows[0].rank: 0 must be at least 1"},
      {"models = [\"m\"]\n[[rows]]\nmethod = \"qlora\"\n", "perplexity: the study measures nothing"},
  };
  for (const Case& c : cases) {
    const std::string e = error_of(c.toml);
    EXPECT_NE(e.find(c.expect), std::string::npos) << "got: " << e << "\nfor:\n" << c.toml;
    EXPECT_EQ(e.rfind("bad.toml", 0), 0u) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  // A row's own tasks are enough to measure something.
  EXPECT_EQ(error_of("models = [\"m\"]\n[[rows]]\nmethod = \"qlora\"\ntasks = [\"piqa\"]\n"), "");
}

TEST(StudySpec, FinetuneInputChecksNameTheKey) {
  auto check = [](const std::string& toml) -> std::string {
    try {
      check_study_inputs(parse_study(toml, "in.toml"), test::paths());
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(check(std::string(kHead) + "[[rows]]\nmethod = [\"qlora\", \"ir-qlora\", \"lora\"]\n"
                                       "tasks = [\"mmlu\"]\n"),
            "");
  EXPECT_NE(
      check(std::string(kHead) + "[finetune]\ndata = \"calib/nope.txt\"\n[[rows]]\nmethod = \"qlora\"\n")
          .find("in.toml: finetune.data: calib/nope.txt: data file not found"),
      std::string::npos);
  EXPECT_NE(
      check(std::string(kHead) + "[[rows]]\nmethod = \"lora\"\ndata = \"nope.json\"\nformat = \"alpaca\"\n")
          .find("in.toml: rows[0].data: nope.json"),
      std::string::npos);
  // IEC needs the rank to divide every width (testbed-25m: 384, 384, 128, 1024); plain LoRA does not.
  EXPECT_NE(check(std::string(kHead) + "[[rows]]\nmethod = \"ir-qlora\"\nrank = 48\n")
                .find("in.toml: rows[0]: testbed-25m: rank 48 does not divide the key/value width 128"),
            std::string::npos);
  EXPECT_EQ(check(std::string(kHead) + "[[rows]]\nmethod = \"lora\"\nrank = 48\n"), "");
  // A malformed Alpaca file fails before any work, at its line.
  const std::string dir = test::temp_dir("spec_alpaca");
  test::write_bytes(dir + "/a.jsonl", "{\"instruction\": \"x\", \"output\": \"y\"}\n{\"instruction\": 3}\n");
  EXPECT_NE(check(std::string(kHead) + "[finetune]\nformat = \"alpaca\"\ndata = \"" + dir +
                  "/a.jsonl\"\n[[rows]]\nmethod = \"qlora\"\n")
                .find("in.toml: finetune.data: " + dir + "/a.jsonl:2:"),
            std::string::npos);
}

TEST(StudySpec, InputChecksNameTheKey) {
  auto check = [](const std::string& toml) -> std::string {
    try {
      check_study_inputs(parse_study(toml, "in.toml"), test::paths());
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  const std::string rows = "[[rows]]\nmethod = \"rtn\"\nwbits = 4\ngroup = 128\n";
  EXPECT_EQ(check(std::string(kHead) + rows), "");
  EXPECT_NE(check(std::string(kHead) + "[[rows]]\nmethod = \"rtn\"\nwbits = 4\ngroup = 100\n")
                .find("in.toml: rows[0]: testbed-25m: --group 100 does not divide in_features 384"),
            std::string::npos);
  EXPECT_NE(check("models = [\"no-such-model\"]\n[perplexity]\ndatasets = [\"wikitext2\"]\n" + rows)
                .find("no-such-model: model not found"),
            std::string::npos);
  EXPECT_NE(
      check("models = [\"testbed-25m\"]\n[perplexity]\ndatasets = [\"text:/nonexistent/x.txt\"]\n" + rows)
          .find("in.toml: perplexity.datasets: "),
      std::string::npos);
  EXPECT_NE(
      check(std::string(kHead) + "[calibration]\nfile = \"calib/nope.txt\"\n[[rows]]\nmethod = \"gptq\"\n"
                                 "wbits = 4\n")
          .find("in.toml: calibration.file: calib/nope.txt: data file not found"),
      std::string::npos);
}

}  // namespace
}  // namespace lowbit

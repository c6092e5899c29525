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
  // fp16 + rtn {4,3,2} + gptq {4,3} + awq 4
  ASSERT_EQ(q.rows.size(), 7u);
  EXPECT_TRUE(q.rows[0].baseline());
  EXPECT_EQ(q.rows[1].label(), "rtn w4 a16 g128");
  EXPECT_EQ(q.rows[4].quant.method, "gptq");
  EXPECT_EQ(q.rows[5].quant.method, "gptq");
  EXPECT_EQ(q.rows[5].quant.wbits, 3);
  EXPECT_EQ(q.rows[6].quant.method, "awq");
  EXPECT_EQ(q.task_limit, 20);
  const StudySpec p = load_study("paper");
  // fp16 + 3 methods x (3 group-128 + 4 per-channel)
  ASSERT_EQ(p.rows.size(), 22u);
  EXPECT_EQ(p.rows[4].label(), "rtn w8 a16 per-channel");
  EXPECT_EQ(p.calib_nsamples, 128);
  EXPECT_EQ(p.ppl_max_windows, 0);
  for (const StudyRow& r : p.rows)
    if (!r.baseline()) EXPECT_EQ(r.quant.calib_file, "calib/testbed-calib.txt");
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

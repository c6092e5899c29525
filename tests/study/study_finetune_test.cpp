// The study's fine-tune rows end to end on testbed-25m (a few steps of QLoRA on short text windows): the
// adapter is trained and evaluated, the report's LoRA table has the row, a study killed in the middle of the
// fine-tune resumes it from its last checkpoint to the same adapter and cells; and what a fine-tune cell's
// key depends on.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/mmap.h"
#include "io/checkpoint.h"
#include "study/runner.h"
#include "study/store.h"
#include "study_process.h"
#include "test_util.h"
#include "train/peft.h"

namespace fs = std::filesystem;

namespace lowbit {
namespace {

using namespace study_process;

// MMLU zero-shot on one question per subject keeps its cell to seconds; the paper preset runs it whole. @DIR@
// holds the heads of the calibration text (the fine-tune data) and of WikiText2 (perplexity), which tokenize
// in a moment where the whole files take seconds.
const char* kFt = R"(name = "ft"
models = ["testbed-25m"]
[perplexity]
datasets = ["text:@DIR@/ppl.txt"]
seqlen = 64
max_windows = 2
kld = true
[tasks]
names = ["piqa"]
limit = 2
mmlu_limit = 1
num_fewshot = 0
[finetune]
data = "@DIR@/ft.txt"
steps = 6
batch = 2
micro_batch = 1
seq_len = 64
rank = 8
lr = 1e-3
save_every = 1
[[rows]]
method = "fp16"
tasks = ["piqa", "mmlu"]
[[rows]]
method = "qlora"
tasks = ["piqa", "mmlu"]
)";
constexpr size_t kFtCells = 3 + 4;  // fp16: ppl, piqa, mmlu; qlora: finetune too

std::vector<std::string> args_for(const std::string& dir, const std::string& name) {
  return {"study",        dir + "/ft.toml",
          "--store",      dir + "/" + name + ".sqlite",
          "--cache-dir",  dir + "/" + name + ".cache",
          "--report-dir", dir + "/" + name + "-report"};
}

// The one fine-tune directory under a cache ("" while there is none).
std::string finetune_dir(const std::string& cache) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(cache, ec))
    if (e.is_directory() && fs::exists(e.path() / "checkpoint", ec)) return e.path().string();
  for (const auto& e : fs::directory_iterator(cache, ec))
    if (fs::exists(e.path() / "lowbit_finetune_report.json", ec)) return e.path().string();
  return "";
}

const CellRecord* find_cell(const std::vector<CellRecord>& cells, const std::string& column,
                            const std::string& method) {
  for (const CellRecord& c : cells)
    if (c.column == column && c.row.at("method") == method) return &c;
  return nullptr;
}

// kFt with its data files written under dir.
std::string study_in(const std::string& dir) {
  test::write_bytes(dir + "/ft.txt", read_file(test::data_path("calib/testbed-calib.txt")).substr(0, 65536));
  test::write_bytes(dir + "/ppl.txt",
                    read_file(test::data_path("wikitext-2-raw/wiki.test.raw")).substr(0, 8192));
  std::string toml = kFt;
  for (size_t p; (p = toml.find("@DIR@")) != std::string::npos;) toml.replace(p, 5, dir);
  return toml;
}

class StudyFinetune : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = test::temp_dir("study_ft");
    test::write_bytes(dir_ + "/ft.toml", study_in(dir_));
    ASSERT_EQ(run_to_end(args_for(dir_, "ref"), dir_ + "/ref.log"), 0) << read_file(dir_ + "/ref.log");
    ref_ = metrics_by_key(dir_ + "/ref.sqlite");
  }
  static std::string dir_;
  static std::map<std::string, std::string> ref_;
};
std::string StudyFinetune::dir_;
std::map<std::string, std::string> StudyFinetune::ref_;

TEST_F(StudyFinetune, TrainsTheAdapterEvaluatesItAndReportsTheLoraTable) {
  ASSERT_EQ(ref_.size(), kFtCells);
  const std::vector<CellRecord> cells = ResultStore(dir_ + "/ref.sqlite").cells();
  const CellRecord* ft = find_cell(cells, "finetune", "qlora");
  ASSERT_NE(ft, nullptr);
  EXPECT_EQ(ft->metrics.at("steps"), 6);
  EXPECT_EQ(ft->metrics.at("tokens"), 6 * 2 * 64);  // steps × batch × seq_len
  EXPECT_TRUE(std::isfinite(ft->metrics.at("final_loss").get<double>()));
  EXPECT_EQ(ft->row.at("finetune").at("data_sha256"), ResultStore(":memory:").file_sha256(dir_ + "/ft.txt"));
  EXPECT_EQ(ft->provenance.at("finetune_data"), dir_ + "/ft.txt");
  EXPECT_GT(ft->seconds, 0);
  // The NF4 base's storage: 4-bit codes plus double-quantized absmax per 64 weights (about 4.127 bits).
  EXPECT_GT(ft->metrics.at("bits_per_weight").get<double>(), 4.1);
  EXPECT_LT(ft->metrics.at("bits_per_weight").get<double>(), 4.2);
  // The adapter moved off its start (B = 0) and belongs to the model.
  const std::string adapter = ft->provenance.at("adapter");
  const Checkpoint ck = load_checkpoint(test::model_path("testbed-25m"));
  LlamaModel model(load_checkpoint(test::model_path("testbed-25m")));
  LoraSet lora = load_adapter(adapter, model, base_fingerprint(ck));
  double sum = 0;
  for (auto& e : lora.entries())
    for (float b : e.adapter->B) sum += std::fabs(b);
  EXPECT_GT(sum, 0);
  EXPECT_EQ(read_adapter_config(adapter).meta.method, "qlora");
  // Its model is not the NF4 base alone nor the fp16 model: perplexity and KL divergence from fp16 differ.
  const CellRecord* qppl = find_cell(cells, "ppl:text:" + dir_ + "/ppl.txt", "qlora");
  const CellRecord* fppl = find_cell(cells, "ppl:text:" + dir_ + "/ppl.txt", "fp16");
  ASSERT_TRUE(qppl && fppl);
  EXPECT_NE(qppl->metrics.at("ppl"), fppl->metrics.at("ppl"));
  EXPECT_GT(qppl->metrics.at("kld_mean").get<double>(), 0);
  const CellRecord* mmlu = find_cell(cells, "mmlu", "qlora");
  ASSERT_NE(mmlu, nullptr);
  EXPECT_TRUE(mmlu->metrics.contains("stem"));
  EXPECT_EQ(find_cell(cells, "task:piqa", "qlora")->metrics.at("n"), 2);

  const std::string md = read_file(dir_ + "/ref-report/report.md");
  const size_t lora_table = md.find("### LoRA fine-tuning (lowbit)");
  ASSERT_NE(lora_table, std::string::npos) << md;
  EXPECT_NE(md.find("| QLoRA", lora_table), std::string::npos) << md;
  EXPECT_NE(md.find("| FP16", lora_table), std::string::npos) << md;
  EXPECT_NE(md.find("QLoRA: 6 steps of 2 examples, 64-token windows of " + dir_ +
                    "/ft.txt as plain text (the paper fine-tunes on Alpaca; this run did not)"),
            std::string::npos)
      << md;
  // The run said so too, with where Alpaca would go.
  const std::string log = read_file(dir_ + "/ref.log");
  EXPECT_NE(log.find("note: fine-tuning on " + dir_ + "/ft.txt as plain text"), std::string::npos) << log;
  EXPECT_NE(log.find("Alpaca data not found"), std::string::npos) << log;
}

TEST_F(StudyFinetune, KilledDuringTheFinetuneResumesToTheSameAdapterAndCells) {
  const auto args = args_for(dir_, "killed");
  const std::string cache = dir_ + "/killed.cache";
  const Proc p = start(args, dir_ + "/killed.log");
  // Kill once the fine-tune has checkpointed step 2 of 6 and before it has finished.
  int64_t step = 0;
  bool finished = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  while (step < 2 && std::chrono::steady_clock::now() < deadline) {
    const std::string d = finetune_dir(cache);
    if (!d.empty()) {
      try {
        step = parse_json_file(d + "/checkpoint/trainer_state.json").at("step").get<int64_t>();
      } catch (const std::exception&) {  // a checkpoint being swapped in
      }
      finished = fs::exists(d + "/lowbit_finetune_report.json");
      if (finished) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  kill(p.pid, SIGKILL);
  waitpid(p.pid, nullptr, 0);
  ASSERT_FALSE(finished) << "the fine-tune finished before it could be killed; the test proves nothing";
  ASSERT_GE(step, 2) << read_file(dir_ + "/killed.log");
  ASSERT_EQ(run_to_end(args, dir_ + "/killed.log"), 0) << read_file(dir_ + "/killed.log");
  const std::string log = read_file(dir_ + "/killed.log");
  EXPECT_NE(log.find("resuming from"), std::string::npos) << log;
  EXPECT_EQ(metrics_by_key(dir_ + "/killed.sqlite"), ref_);
  EXPECT_EQ(read_file(finetune_dir(cache) + "/adapter_model.safetensors"),
            read_file(finetune_dir(dir_ + "/ref.cache") + "/adapter_model.safetensors"));
  EXPECT_EQ(read_file(dir_ + "/killed-report/report.md"), read_file(dir_ + "/ref-report/report.md"));
  // The resumed cell records the training time of both runs, and that it resumed.
  const std::vector<CellRecord> cells = ResultStore(dir_ + "/killed.sqlite").cells();
  const CellRecord* ft = find_cell(cells, "finetune", "qlora");
  ASSERT_NE(ft, nullptr);
  EXPECT_GE(ft->provenance.at("resumed_from").get<int64_t>(), 2);
}

// The keys of a study's cells (plan order), per row: {row index -> keys}.
std::vector<std::vector<std::string>> keys_by_row(const std::string& toml) {
  const StudySpec spec = parse_study(toml, "k.toml");
  static ResultStore mem(":memory:");  // remembers the files' sha256 from one plan to the next
  const std::vector<std::string> keys = study_keys(spec, mem, test::paths());
  std::vector<std::vector<std::string>> out;
  size_t k = 0;
  for (const StudyRow& r : spec.rows) {
    // Each row's column count: its own quant/finetune column, one ppl dataset, its tasks.
    const size_t n = (r.baseline() ? 0 : 1) + 1 + spec.row_tasks(r).size();
    out.emplace_back(keys.begin() + ptrdiff_t(k), keys.begin() + ptrdiff_t(k + n));
    k += n;
  }
  EXPECT_EQ(k, keys.size());
  return out;
}

std::string with(std::string toml, const std::string& from, const std::string& to) {
  const size_t p = toml.find(from);
  EXPECT_NE(p, std::string::npos) << from;
  return toml.replace(p, from.size(), to);
}

TEST(StudyFinetuneKeys, EveryFinetuneSettingAndTheDataContentAreInTheKey) {
  const std::string dir = test::temp_dir("study_ft_keys");
  const std::string text = read_file(test::data_path("calib/testbed-calib.txt")).substr(0, 65536);
  test::write_bytes(dir + "/a.txt", text);
  test::write_bytes(dir + "/same.txt", text);
  test::write_bytes(dir + "/b.txt", text.substr(1000));
  const std::string base = study_in(dir) + "[[rows]]\nmethod = \"rtn\"\nwbits = 4\n" +
                           "[[rows]]\nmethod = \"ir-qlora\"\ndata = \"" + dir + "/a.txt\"\n";
  const auto k0 = keys_by_row(base);
  ASSERT_EQ(k0.size(), 4u);
  EXPECT_EQ(keys_by_row(base), k0);  // same settings, same keys
  auto expect_changed = [&](const std::string& toml, const std::string& what) {
    const auto k = keys_by_row(toml);
    EXPECT_EQ(k[0], k0[0]) << what;  // fp16 and rtn never depend on [finetune]
    EXPECT_EQ(k[2], k0[2]) << what;
    for (size_t c = 0; c < k0[1].size(); ++c) EXPECT_NE(k[1][c], k0[1][c]) << what << " column " << c;
  };
  expect_changed(with(base, "steps = 6", "steps = 7"), "steps");
  expect_changed(with(base, "lr = 1e-3", "lr = 2e-3"), "lr");
  expect_changed(with(base, "rank = 8", "rank = 16"), "rank");
  expect_changed(with(base, "seq_len = 64", "seq_len = 128"), "seq_len");
  expect_changed(with(base, "batch = 2", "batch = 4"), "batch");
  expect_changed(with(base, "micro_batch = 1", "micro_batch = 2"), "micro_batch");
  expect_changed(with(base, "save_every = 1", "save_every = 1\nseed = 7"), "seed");
  expect_changed(with(base, "save_every = 1", "save_every = 1\ndropout = 0.1"), "dropout");
  expect_changed(with(base, "save_every = 1", "save_every = 1\nalpha = 32"), "alpha");
  expect_changed(with(base, "save_every = 1", "save_every = 1\nwarmup_ratio = 0.1"), "warmup_ratio");
  expect_changed(with(base, "save_every = 1", "save_every = 1\nmax_grad_norm = 1.0"), "max_grad_norm");
  expect_changed(with(base, dir + "/ft.txt", dir + "/b.txt"), "data");
  // The method: qlora and ir-qlora on the same settings are different rows.
  EXPECT_NE(k0[1][0], k0[3][0]);
  // The data by content: another path to the same bytes is the same row; other bytes are not.
  EXPECT_EQ(keys_by_row(with(base, dir + "/a.txt", dir + "/same.txt"))[3], k0[3]);
  EXPECT_NE(keys_by_row(with(base, dir + "/a.txt", dir + "/b.txt"))[3][0], k0[3][0]);
  // Checkpointing does not change the adapter, so not the key either.
  EXPECT_EQ(keys_by_row(with(base, "save_every = 1", "save_every = 3"))[1], k0[1]);
  // A row's task list adds or drops columns; the others keep their keys.
  const auto k =
      keys_by_row(with(base, "method = \"fp16\"\ntasks = [\"piqa\", \"mmlu\"]", "method = \"fp16\""));
  ASSERT_EQ(k[0].size(), 2u);  // ppl and the study's piqa
  EXPECT_EQ(k[0][0], k0[0][0]);
  EXPECT_EQ(k[0][1], k0[0][1]);
}

TEST(StudyFinetuneKeys, PaperPresetKeepsEveryCellOfTheCommittedStore) {
  // results/testbed-25m-paper.sqlite holds the preset's 197 PTQ cells (and, as sessions run them, some of
  // the rows added since: MMLU on fp16, NormalFloat, QLoRA, IR-QLoRA, DB-LLM, QuIP); those rows must leave
  // the stored keys as they were, so the store stays valid.
  const fs::path repo = fs::path(__FILE__).parent_path().parent_path().parent_path();
  const std::string copy = test::temp_dir("paper_store") + "/paper.sqlite";
  fs::copy_file(repo / "results/testbed-25m-paper.sqlite", copy);
  const std::set<std::string> stored = ResultStore(copy).keys();
  ASSERT_GE(stored.size(), 197u);
  ResultStore mem(":memory:");
  const StudySpec paper = load_study("paper");
  const std::vector<std::string> keys = study_keys(paper, mem, test::paths());
  const std::set<std::string> planned(keys.begin(), keys.end());
  for (const std::string& k : stored)
    EXPECT_TRUE(planned.count(k)) << "stored cell " << k << " left the plan";
  // The new cells: MMLU on fp16; NormalFloat's quant, 3 ppl, 5 tasks and MMLU; each fine-tune row's
  // finetune, 3 ppl, 5 tasks and MMLU; DB-LLM's quant, 3 ppl and 5 tasks; the same 9 for each of QuIP's 4
  // rows, PB-LLM's 2, BiLLM's 1 and SliM-LLM's 2.
  EXPECT_EQ(keys.size(), 197u + 1 + 10 + 2 * 10 + 9 + 4 * 9 + 2 * 9 + 9 + 2 * 9);
}

}  // namespace
}  // namespace lowbit

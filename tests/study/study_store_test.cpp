// The SQLite result store: round trip, idempotent puts, merge, bad files.
#include <gtest/gtest.h>

#include "core/error.h"
#include "study/runner.h"
#include "study/store.h"
#include "test_util.h"

namespace lowbit {
namespace {

CellRecord cell(const std::string& key, int64_t seq, double ppl) {
  CellRecord c;
  c.key = key;
  c.seq = seq;
  c.model = "m";
  c.model_hash = "h";
  c.model_info = {{"n_layer", 2}};
  c.row = {{"method", "rtn"}, {"wbits", 4}};
  c.column = "ppl:wikitext2";
  c.params = {{"seqlen", 128}};
  c.metrics = {{"ppl", ppl}};
  c.provenance = {{"git_revision", "abc"}};
  c.seconds = 1.5;
  c.peak_rss = 123456789012ull;
  c.lowbit_version = "0.1.0";
  c.created_at = "2026-11-25T00:00:00Z";
  return c;
}

TEST(ResultStore, RoundTripAndIdempotentPut) {
  const std::string dir = test::temp_dir("store");
  {
    ResultStore s(dir + "/a.sqlite");
    EXPECT_TRUE(s.put(cell("k2", 2, 12.25)));
    EXPECT_TRUE(s.put(cell("k1", 1, 1.0 / 3.0)));
    EXPECT_FALSE(s.put(cell("k1", 1, 99)));  // a finished cell is never overwritten
  }
  ResultStore s(dir + "/a.sqlite");  // reopened: everything was committed
  EXPECT_TRUE(s.has("k1"));
  EXPECT_FALSE(s.has("k3"));
  const auto cells = s.cells();
  ASSERT_EQ(cells.size(), 2u);
  EXPECT_EQ(cells[0].key, "k1");                                // ordered by seq
  EXPECT_EQ(cells[0].metrics["ppl"].get<double>(), 1.0 / 3.0);  // doubles survive exactly
  EXPECT_EQ(cells[0].peak_rss, 123456789012ull);
  EXPECT_EQ(cells[0].row.dump(), cell("k1", 1, 0).row.dump());
  EXPECT_EQ(cells[1].created_at, "2026-11-25T00:00:00Z");
}

TEST(ResultStore, MergeCopiesMissingAndCountsConflicts) {
  const std::string dir = test::temp_dir("merge");
  ResultStore a(dir + "/a.sqlite"), b(dir + "/b.sqlite"), out(dir + "/out.sqlite");
  a.put(cell("k1", 1, 1));
  a.put(cell("k2", 2, 2));
  b.put(cell("k2", 2, 2.5));  // same key, different value: a conflict, the first store wins
  b.put(cell("k3", 3, 3));
  int64_t conflicts = -1;
  EXPECT_EQ(merge_stores(out, a, &conflicts), 2);
  EXPECT_EQ(conflicts, 0);
  EXPECT_EQ(merge_stores(out, b, &conflicts), 1);
  EXPECT_EQ(conflicts, 1);
  EXPECT_EQ(merge_stores(out, b, &conflicts), 0);  // idempotent
  const auto cells = out.cells();
  ASSERT_EQ(cells.size(), 3u);
  EXPECT_EQ(cells[1].metrics["ppl"].get<double>(), 2);
}

TEST(ResultStore, FileHashIsCachedAndRefreshedOnChange) {
  const std::string dir = test::temp_dir("hash");
  ResultStore s(dir + "/s.sqlite");
  test::write_bytes(dir + "/f", "abc");
  EXPECT_EQ(s.file_sha256(dir + "/f"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  test::write_bytes(dir + "/f", "abcd");  // size changed: re-hashed
  EXPECT_EQ(s.file_sha256(dir + "/f"), "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589");
}

TEST(ResultStore, NotAStoreIsAClearError) {
  const std::string dir = test::temp_dir("notstore");
  test::write_bytes(dir + "/x.sqlite", std::string(4096, 'x'));
  try {
    ResultStore s(dir + "/x.sqlite");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/x.sqlite"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lowbit

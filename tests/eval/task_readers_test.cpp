#include "eval/task_readers.h"

#include <gtest/gtest.h>

#include <functional>

#include "../test_util.h"
#include "core/error.h"

namespace lowbit {
namespace {

// The call throws a one-line lowbit::Error containing every one of `parts` (e.g. "bad.jsonl:3:").
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    for (const std::string& p : parts)
      EXPECT_NE(m.find(p), std::string::npos) << "'" << p << "' not in: " << m;
  }
}

std::string write(const std::string& name, const std::string& text) {
  static std::string dir = test::temp_dir("eval-readers");
  std::string p = dir + "/" + name;
  test::write_bytes(p, text);
  return p;
}

TEST(EvalReaders, PiqaRealFile) {
  auto items = read_piqa(test::data_path("piqa/valid.jsonl"), test::data_path("piqa/valid-labels.lst"));
  ASSERT_EQ(items.size(), 1838u);
  EXPECT_EQ(items[0].goal, "How do I ready a guinea pig cage for it's new occupants?");
  EXPECT_EQ(items[0].label, 0);
  EXPECT_EQ(items[1].goal, "dresser");
  EXPECT_EQ(items[1].sol2, "finish, woodgrain with  bobby pin ");  // kept exactly, trailing space included
  EXPECT_EQ(items[1].label, 1);
}

TEST(EvalReaders, ArcRealFiles) {
  auto easy = read_arc(test::data_path("arc/ARC-Easy-Test.jsonl"));
  auto challenge = read_arc(test::data_path("arc/ARC-Challenge-Test.jsonl"));
  ASSERT_EQ(easy.size(), 2376u);
  ASSERT_EQ(challenge.size(), 1172u);
  EXPECT_EQ(easy[0].id, "Mercury_417466");
  EXPECT_EQ(easy[0].choices.size(), 4u);
  EXPECT_EQ(easy[0].gold, 0);
  // Numeric labels: answerKey "2" is the second choice.
  bool seen_numeric = false, seen_five = false, seen_three = false;
  for (const ArcItem& it : easy) {
    if (it.id == "NYSEDREGENTS_2015_8_28") {
      seen_numeric = true;
      EXPECT_EQ(it.stem, "All living and nonliving material is composed of");
      EXPECT_EQ(it.choices, (std::vector<std::string>{"air", "elements", "water", "soil"}));
      EXPECT_EQ(it.gold, 1);
    }
    seen_five |= it.choices.size() == 5;
    seen_three |= it.choices.size() == 3;
  }
  EXPECT_TRUE(seen_numeric && seen_five && seen_three);
  for (const ArcItem& it : challenge)
    if (it.id == "TIMSS_1995_8_J7") EXPECT_EQ(it.gold, 3);  // "D" of five choices
}

TEST(EvalReaders, HellaswagRealFile) {
  auto items = read_hellaswag(test::data_path("hellaswag/hellaswag_val_full.txt"));
  ASSERT_EQ(items.size(), 10042u);
  EXPECT_EQ(items[0].query, "Roof shingle removal: A man is sitting on a roof. he");
  EXPECT_EQ(items[0].gold, 3);
  EXPECT_EQ(items[0].endings[3], "starts pulling up roofing on a roof.");
  EXPECT_EQ(items.back().gold >= 0 && items.back().gold <= 3, true);
}

TEST(EvalReaders, WinograndeRealFile) {
  auto items =
      read_winogrande(test::data_path("winogrande/dev.jsonl"), test::data_path("winogrande/dev-labels.lst"));
  ASSERT_EQ(items.size(), 1267u);
  EXPECT_EQ(items[0].sentence,
            "Sarah was a much better surgeon than Maria so _ always got the easier cases.");
  EXPECT_EQ(items[0].option1, "Sarah");
  EXPECT_EQ(items[0].option2, "Maria");
  EXPECT_EQ(items[0].answer, 2);
  EXPECT_EQ(items[1].answer, 1);
  // Without the labels file the answers come from the rows.
  EXPECT_EQ(read_winogrande(test::data_path("winogrande/dev.jsonl")).size(), 1267u);
}

TEST(EvalReaders, MmluRealFiles) {
  auto subjects = read_mmlu(test::data_path("mmlu"));
  ASSERT_EQ(subjects.size(), 57u);
  size_t dev = 0, test_rows = 0;
  for (const MmluSubject& s : subjects) {
    dev += s.dev.size();
    test_rows += s.test.size();
    EXPECT_EQ(s.dev.size(), 5u) << s.name;
  }
  EXPECT_EQ(dev, 285u);
  EXPECT_EQ(test_rows, 14042u);
  EXPECT_EQ(subjects[0].name, "abstract_algebra");
  const MmluItem& d1 = subjects[0].dev[1];  // quoted fields with commas
  EXPECT_EQ(d1.question,
            "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H "
            "and K are "
            "subgroups of G then HK is a subgroup of G.");
  EXPECT_EQ(d1.choices[0], "True, True");
  EXPECT_EQ(d1.choices[3], "False, True");
  EXPECT_EQ(d1.answer, 1);
}

TEST(EvalReaders, LambadaRealFile) {
  auto lines = read_lambada(test::data_path("lambada/lambada_test_plain_text.txt"));
  ASSERT_EQ(lines.size(), 5153u);
  EXPECT_TRUE(lines[0].ends_with("his mouth curved in a confident grin , i do n't care about signs"))
      << lines[0];
}

TEST(EvalReaders, CsvQuotingNewlinesAndBlankLines) {
  std::string text =
      "plain,\"with, comma\",\"with \"\"quotes\"\"\",\"multi\nline\",,last\r\n"
      "\n"
      "\"a\",b\n"
      "x,\"y\r\nz\"";
  auto rows = parse_csv(text, "t.csv");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].fields,
            (std::vector<std::string>{"plain", "with, comma", "with \"quotes\"", "multi\nline", "", "last"}));
  EXPECT_EQ(rows[0].line, 1u);
  EXPECT_EQ(rows[1].fields, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(rows[1].line, 4u);  // the quoted newline and the blank line both count
  EXPECT_EQ(rows[2].fields, (std::vector<std::string>{"x", "y\r\nz"}));
  EXPECT_EQ(rows[2].line, 5u);
  expect_error([] { parse_csv("a,b\n\"open,c\n", "t.csv"); }, {"t.csv:2:", "unterminated"});
  expect_error([] { parse_csv("a,\"b\"c\n", "t.csv"); }, {"t.csv:1:", "closing quote"});
}

TEST(EvalReaders, MalformedRowsNameFileAndLine) {
  std::string good = "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n";
  std::string labels2 = write("l2.lst", "0\n1\n");
  expect_error([&] { read_piqa(write("p1.jsonl", good + "{\"goal\": \"g\", \"sol1\": \"a\"}\n"), labels2); },
               {"p1.jsonl:2:", "sol2"});
  expect_error([&] { read_piqa(write("p2.jsonl", good + "{\"goal\": \"g\",,}\n"), labels2); },
               {"p2.jsonl:2:", "malformed JSON"});
  expect_error([&] { read_piqa(write("p3.jsonl", good), labels2); }, {"l2.lst", "2 labels for 1 rows"});
  expect_error([&] { read_piqa(write("p4.jsonl", good + good), write("l3.lst", "0\n7\n")); },
               {"l3.lst:2:", "'7'"});

  std::string arc_ok =
      "{\"id\":\"x\",\"question\":{\"stem\":\"s\",\"choices\":[{\"text\":\"a\",\"label\":\"A\"},{\"text\":"
      "\"b\","
      "\"label\":\"B\"}]},\"answerKey\":\"B\"}\n";
  std::string arc_bad_key = arc_ok;
  arc_bad_key.replace(arc_bad_key.find("\"answerKey\":\"B\""), 15, "\"answerKey\":\"C\"");
  expect_error([&] { read_arc(write("a1.jsonl", arc_ok + arc_bad_key)); }, {"a1.jsonl:2:", "answerKey 'C'"});
  std::string arc_bad_labels = arc_ok;
  arc_bad_labels.replace(arc_bad_labels.find("\"label\":\"B\""), 11, "\"label\":\"D\"");
  expect_error([&] { read_arc(write("a2.jsonl", arc_bad_labels)); }, {"a2.jsonl:1:", "labels 'AD'"});

  std::string hs = "ctx\n1\ne0\ne1\ne2\ne3\n";
  EXPECT_EQ(read_hellaswag(write("h0.txt", hs + hs)).size(), 2u);
  expect_error([&] { read_hellaswag(write("h1.txt", hs + "ctx\n4\ne0\ne1\ne2\ne3\n")); },
               {"h1.txt:8:", "gold"});
  expect_error([&] { read_hellaswag(write("h2.txt", hs + "ctx\n1\ne0\n")); }, {"h2.txt:7:", "6 lines"});
  expect_error([&] { read_hellaswag(write("h3.txt", hs + "ct\xff\n1\ne0\ne1\ne2\ne3\n")); },
               {"h3.txt:7:", "UTF-8"});
  std::string hsj =
      "{\"activity_label\": \"A\", \"ctx_a\": \"x.\", \"ctx_b\": \"the MAN\", \"endings\": [\"a\", \"b\", "
      "\"c\", "
      "\"d\"], \"label\": 2}\n";
  auto hj = read_hellaswag(write("h4.jsonl", hsj));
  ASSERT_EQ(hj.size(), 1u);
  EXPECT_EQ(hj[0].query, "A: x. The man");  // ctx_b.capitalize(), as lm-eval v0.3
  EXPECT_EQ(hj[0].gold, 2);
  expect_error([&] { read_hellaswag(write("h5.jsonl", hsj + "{\"activity_label\": \"A\"}\n")); },
               {"h5.jsonl:2:", "ctx_a"});

  std::string wg = "{\"sentence\": \"a _ b\", \"option1\": \"x\", \"option2\": \"y\", \"answer\": \"1\"}\n";
  expect_error(
      [&] {
        read_winogrande(write("w1.jsonl", wg + "{\"sentence\": \"a b\", \"option1\": \"x\", "
                                               "\"option2\": \"y\", \"answer\": \"1\"}\n"));
      },
      {"w1.jsonl:2:", "'_'"});
  expect_error(
      [&] {
        read_winogrande(write("w2.jsonl", wg + "{\"sentence\": \"a _\", \"option1\": \"x\", "
                                               "\"option2\": \"y\", \"answer\": \"3\"}\n"));
      },
      {"w2.jsonl:2:", "answer '3'"});
  expect_error([&] { read_winogrande(write("w3.jsonl", wg), write("wl.lst", "2\n")); },
               {"wl.lst:1:", "disagrees"});

  expect_error([&] { read_mmlu_csv(write("m1.csv", "q,a,b,c,d,A\n\"q, x\",a,b,c,d\n")); },
               {"m1.csv:2:", "5 fields"});
  expect_error([&] { read_mmlu_csv(write("m2.csv", "q,a,b,c,d,A\nq,a,b,c,d,E\n")); },
               {"m2.csv:2:", "answer 'E'"});
  expect_error([&] { read_mmlu_csv(write("m3.csv", "\"q\nspans\",a,b,c,d,A\nq,a,\"b,c,d,A\n")); },
               {"m3.csv:3:", "unterminated"});

  expect_error([&] { read_lambada(write("l1.txt", "a b c\nnospace\n")); }, {"l1.txt:2:", "final word"});
  expect_error([] { read_mmlu("/nonexistent-mmlu"); }, {"/nonexistent-mmlu/dev", "not found"});
}

}  // namespace
}  // namespace lowbit

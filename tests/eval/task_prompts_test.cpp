#include "eval/task_prompts.h"

#include <gtest/gtest.h>

#include <map>

#include "../test_util.h"
#include "core/error.h"
#include "eval/task_registry.h"
#include "eval/task_text.h"

namespace lowbit {
namespace {

using Strings = std::vector<std::string>;

TEST(EvalText, PyStripIsPythonsStrip) {
  // Python: "\x85\xa0\u3000 a b\t\n\u2029".strip() == "a b"; U+200B and U+FEFF are not whitespace.
  EXPECT_EQ(py_strip("\xc2\x85\xc2\xa0\xe3\x80\x80 a b\t\n\xe2\x80\xa9"), "a b");
  EXPECT_EQ(py_strip("\xe2\x80\x8b"
                     "a"
                     "\xef\xbb\xbf"),
            "\xe2\x80\x8b"
            "a"
            "\xef\xbb\xbf");
  EXPECT_EQ(py_strip("\x1c\x1f\v\f\r"), "");
  EXPECT_EQ(py_strip(""), "");
  EXPECT_EQ(py_strip("x\xc2\x85..."), "x\xc2\x85...");  // inner U+0085 stays
  EXPECT_EQ(py_strip("caf\xc3\xa9 "), "caf\xc3\xa9");
}

TEST(EvalText, Utf8LengthAndValidity) {
  EXPECT_EQ(utf8_length("abc"), 3u);
  EXPECT_EQ(utf8_length("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), 8u);  // é, €, 😀 are one each
  EXPECT_TRUE(valid_utf8("caf\xc3\xa9"));
  EXPECT_FALSE(valid_utf8("\xc3"));              // truncated
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
}

TEST(EvalText, HellaswagPreprocessMatchesLmEval) {
  // Worked by hand from lm-eval v0.3 HellaSwag.preprocess.
  EXPECT_EQ(hellaswag_preprocess("  Home: [header] How to x [title] Do y. [step] Then z.  "),
            "Home: How to x. Do y. Then z.");
  EXPECT_EQ(hellaswag_preprocess("a [b [c] d] e"), "a d] e");  // shortest match from the first '['
  EXPECT_EQ(hellaswag_preprocess("open [ bracket"), "open [ bracket");
  EXPECT_EQ(hellaswag_preprocess("x    y"), "x  y");        // one pass of "  " -> " "
  EXPECT_EQ(hellaswag_preprocess("[a\nb] c"), "[a\nb] c");  // '.' does not match a newline
  EXPECT_EQ(py_replace("aaaa", "aa", "a"), "aa");
}

TEST(EvalPrompts, Piqa) {
  auto ex =
      piqa_examples(read_piqa(test::data_path("piqa/valid.jsonl"), test::data_path("piqa/valid-labels.lst")));
  ASSERT_EQ(ex.size(), 1838u);
  EXPECT_EQ(ex[0].contexts,
            Strings(2, "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"));
  EXPECT_EQ(
      ex[0].continuations,
      (Strings{
          " Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips, "
          "you will also need to supply it with a water bottle and a food dish.",
          " Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans "
          "material, you will also need to supply it with a water bottle and a food dish."}));
  EXPECT_EQ(ex[0].gold, 0);
  EXPECT_EQ(ex[1].contexts[0], "Question: dresser\nAnswer:");
  EXPECT_EQ(ex[1].continuations,
            (Strings{" replace drawer with bobby pin ", " finish, woodgrain with  bobby pin "}));
  EXPECT_EQ(ex[1].choice_texts[1], "finish, woodgrain with  bobby pin ");
  EXPECT_EQ(ex[1].gold, 1);
}

TEST(EvalPrompts, Arc) {
  auto ex = arc_examples(read_arc(test::data_path("arc/ARC-Challenge-Test.jsonl")));
  ASSERT_EQ(ex.size(), 1172u);
  EXPECT_EQ(
      ex[0].contexts[0],
      "Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is the "
      "most likely effect of this increase in rotation?\nAnswer:");
  EXPECT_EQ(ex[0].continuations,
            (Strings{" Planetary density will decrease.", " Planetary years will become longer.",
                     " Planetary days will become shorter.", " Planetary gravity will become stronger."}));
  EXPECT_EQ(ex[0].choice_texts[0], "Planetary density will decrease.");
  EXPECT_EQ(ex[0].gold, 2);
  auto easy = arc_examples(read_arc(test::data_path("arc/ARC-Easy-Test.jsonl")));
  EXPECT_EQ(easy[0].contexts[0],
            "Question: Which statement best explains why photosynthesis is the foundation of most food "
            "webs?\nAnswer:");
  EXPECT_EQ(easy[0].continuations[3], " The producers in all ecosystems are plants.");
  EXPECT_EQ(easy[0].gold, 0);
}

TEST(EvalPrompts, Hellaswag) {
  auto ex = hellaswag_examples(read_hellaswag(test::data_path("hellaswag/hellaswag_val_full.txt")));
  ASSERT_EQ(ex.size(), 10042u);
  // The text form keeps ctx_b lower-case ("he"); lm-eval on the original jsonl would have "He".
  EXPECT_EQ(ex[0].contexts[0], "Roof shingle removal: A man is sitting on a roof. he");
  EXPECT_EQ(ex[0].continuations,
            (Strings{" is using wrap to wrap a pair of skis.", " is ripping level tiles off.",
                     " is holding a rubik's cube.", " starts pulling up roofing on a roof."}));
  EXPECT_EQ(ex[0].choice_texts[2], "is holding a rubik's cube.");
  EXPECT_EQ(ex[0].gold, 3);
  // Task 3505 (file line 21031): preprocess drops "[www.kiddio.org]" and the double space it leaves.
  EXPECT_EQ(
      ex[3505].contexts[0],
      "Family Life: How to entertain a toddler. Ask the toddler what he or she would like to do instead of "
      "doing "
      "what you would like to do.. Visit a site like to find loads of creative activities for toddlers and "
      "preschoolers.. Choose small, simple games like candy land or chutes and ladders.");
  EXPECT_EQ(
      ex[3505].continuations[1],
      " Try some arts and crafts like washable paints, little foamies, crayons, and paper.. Watch the "
      "toddler's favorite movie, even if it's barney, and even if he or she has seen it 20 times before.");
  EXPECT_EQ(ex[3505].gold, 1);
}

TEST(EvalPrompts, WinograndePartialScoring) {
  auto ex = winogrande_examples(
      read_winogrande(test::data_path("winogrande/dev.jsonl"), test::data_path("winogrande/dev-labels.lst")));
  ASSERT_EQ(ex.size(), 1267u);
  EXPECT_EQ(ex[0].contexts, (Strings{"Sarah was a much better surgeon than Maria so Sarah",
                                     "Sarah was a much better surgeon than Maria so Maria"}));
  EXPECT_EQ(ex[0].continuations, Strings(2, " always got the easier cases."));
  EXPECT_EQ(ex[0].gold, 1);
  // Row 168 has two spaces after "_": lm-eval strips the rest, so the continuation has one.
  EXPECT_EQ(ex[168].contexts[1], "The temperature in winter is much different than summer,  the winter");
  EXPECT_EQ(ex[168].continuations[0], " is always lower.");
  EXPECT_EQ(ex[168].gold, 1);
}

TEST(EvalPrompts, MmluFiveShot) {
  auto subjects = read_mmlu(test::data_path("mmlu"));
  ASSERT_EQ(subjects.size(), 57u);
  auto ex = mmlu_examples(subjects[0], 5, 0);
  ASSERT_EQ(ex.size(), 100u);
  EXPECT_EQ(
      ex[0].contexts[0],
      "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
      "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
      "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K "
      "are "
      "subgroups of G then HK is a subgroup of G.\nA. True, True\nB. False, False\nC. True, False\nD. False, "
      "True\nAnswer: B\n\n"
      "Statement 1 | Every element of a group generates a cyclic subgroup of the group. Statement 2 | The "
      "symmetric group S_10 has 10 elements.\nA. True, True\nB. False, False\nC. True, False\nD. False, "
      "True\nAnswer: C\n\n"
      "Statement 1| Every function from a finite set onto itself must be one to one. Statement 2 | Every "
      "subgroup of an abelian group is abelian.\nA. True, True\nB. False, False\nC. True, False\nD. False, "
      "True\nAnswer: A\n\n"
      "Find the characteristic of the ring 2Z.\nA. 0\nB. 3\nC. 12\nD. 30\nAnswer: A\n\n"
      "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nA. 0\nB. 4\nC. "
      "2\nD. 6\nAnswer:");
  EXPECT_EQ(ex[0].continuations, (Strings{" A", " B", " C", " D"}));
  EXPECT_EQ(ex[0].gold, 1);
  EXPECT_EQ(mmlu_prefix(subjects[0], 0),
            "The following are multiple choice questions (with answers) about abstract algebra.\n\n");
  EXPECT_THROW(mmlu_prefix(subjects[0], 6), Error);

  // sociology test row 69 ends its question with U+0085, which str.strip() removes.
  const MmluSubject* soc = nullptr;
  for (const MmluSubject& s : subjects)
    if (s.name == "sociology") soc = &s;
  ASSERT_NE(soc, nullptr);
  ASSERT_EQ(soc->test[69].question, "Role-learning theory suggests that\xc2\x85");
  auto sx = mmlu_examples(*soc, 5, 3);
  const std::string& c = sx[69].contexts[0];
  EXPECT_TRUE(c.ends_with(
      "\n\nRole-learning theory suggests that\nA. we internalise and take on social roles from a "
      "pre-existing "
      "framework\nB. we create and negotiate our roles through interaction with others\nC. social roles are "
      "not fixed or stable but fluid and pluralistic\nD. roles have to be learned to suppress unconscious "
      "motivations\nAnswer:"))
      << c;
  EXPECT_EQ(sx[69].group, 3);
  EXPECT_EQ(mmlu_subject_title("high_school_government_and_politics"), "high school government and politics");
}

TEST(EvalPrompts, MmluCategoriesOfThePaper) {
  auto subjects = read_mmlu(test::data_path("mmlu"));
  std::map<std::string, int> count;
  for (const MmluSubject& s : subjects) count[mmlu_category(s.name)]++;
  EXPECT_EQ(count["STEM"], 18);
  EXPECT_EQ(count["humanities"], 13);
  EXPECT_EQ(count["social sciences"], 12);
  EXPECT_EQ(count["other"], 14);
  EXPECT_EQ(mmlu_category("anatomy"), "other");  // "health" is in "other (business, health, misc.)"
  EXPECT_EQ(mmlu_category("formal_logic"), "humanities");
  EXPECT_EQ(mmlu_category("econometrics"), "social sciences");
  EXPECT_EQ(mmlu_category("computer_security"), "STEM");
  EXPECT_THROW(mmlu_category("astrology"), Error);
}

TEST(EvalPrompts, Lambada) {
  auto ex = lambada_examples(read_lambada(test::data_path("lambada/lambada_test_plain_text.txt")));
  ASSERT_EQ(ex.size(), 5153u);
  EXPECT_EQ(ex[0].continuations, Strings{" signs"});
  const std::string& c = ex[0].contexts[0];
  EXPECT_EQ(c.substr(0, 40), "in my palm is a clear stone , and inside");
  EXPECT_TRUE(c.ends_with("confident grin , i do n't care about")) << c;
}

TEST(EvalPrompts, RegistryLimitAndFewshot) {
  std::string data = test::paths().data_dir;
  auto piqa = load_task("piqa", data, 7, -1);
  EXPECT_EQ(piqa.examples.size(), 7u);
  EXPECT_TRUE(piqa.with_norm);
  ASSERT_EQ(piqa.files.size(), 2u);
  EXPECT_EQ(piqa.files[0].first, "piqa/valid.jsonl");
  auto mmlu = load_task("mmlu", data, 2, -1);
  EXPECT_EQ(mmlu.examples.size(), 114u);  // 2 per subject
  EXPECT_EQ(mmlu.num_fewshot, 5);
  EXPECT_EQ(mmlu.subjects.size(), 57u);
  EXPECT_EQ(mmlu.files.size(), 114u);
  auto mmlu0 = load_task("mmlu", data, 1, 0);
  EXPECT_EQ(
      mmlu0.examples[0].contexts[0],
      "The following are multiple choice questions (with answers) about abstract algebra.\n\nFind the degree "
      "for "
      "the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:");
  EXPECT_THROW(load_task("piqa", data, 0, 5), Error);
  EXPECT_THROW(load_task("nope", data, 0, -1), Error);
  EXPECT_THROW(load_task("piqa", "/nonexistent-data", 0, -1), Error);
}

}  // namespace
}  // namespace lowbit

// Normalization and deduplication: UTF-8 validity against the Unicode well-formedness table (boundary
// cases on both sides), the Latin-1 fallback, line ends, and exact-duplicate removal keeping order.
#include <gtest/gtest.h>

#include "trainer/corpus/normalize.h"

namespace dytrain {
namespace {

TEST(Utf8, AcceptsWellFormedAndRejectsTheRest) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain ASCII"));
  EXPECT_TRUE(is_valid_utf8("\xC2\x80"));              // U+0080, first 2-byte
  EXPECT_TRUE(is_valid_utf8("\xE0\xA0\x80"));          // U+0800, first 3-byte
  EXPECT_TRUE(is_valid_utf8("\xED\x9F\xBF"));          // U+D7FF, last before surrogates
  EXPECT_TRUE(is_valid_utf8("\xF0\x90\x80\x80"));      // U+10000
  EXPECT_TRUE(is_valid_utf8("\xF4\x8F\xBF\xBF"));      // U+10FFFF, the last code point
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));             // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xE0\x9F\xBF"));         // overlong 3-byte
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));         // U+D800 surrogate
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));     // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("caf\xE9"));              // Latin-1 e-acute
  EXPECT_FALSE(is_valid_utf8("\xE2\x82"));             // truncated sequence
  EXPECT_FALSE(is_valid_utf8("\x80"));                 // lone continuation byte
}

TEST(Normalize, KeepsUtf8AndConvertsLatin1) {
  EXPECT_EQ(normalize_text("caf\xC3\xA9 \xE2\x80\x94 ok"), "caf\xC3\xA9 \xE2\x80\x94 ok");
  EXPECT_EQ(normalize_text("caf\xE9 \xA3" "5"), "caf\xC3\xA9 \xC2\xA3" "5");  // read as Latin-1
}

TEST(Normalize, LineEndsBomAndNul) {
  EXPECT_EQ(normalize_text("\xEF\xBB\xBFone\r\ntwo\rthree\n"), "one\ntwo\nthree\n");
  EXPECT_EQ(normalize_text(std::string("a\0b", 3)), "ab");
  EXPECT_EQ(normalize_text("\r\n\r\n"), "\n\n");
}

TEST(Dedup, DropsExactDuplicatesKeepingFirstAndOrder) {
  std::vector<Document> docs = {{"a", "same text"}, {"b", "other"}, {"c", "same text"},
                                {"d", "same text "}, {"e", "other"}};
  EXPECT_EQ(remove_duplicates(&docs), 2);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].name, "a");
  EXPECT_EQ(docs[1].name, "b");
  EXPECT_EQ(docs[2].name, "d");  // differs by a trailing space: not a duplicate
  EXPECT_EQ(docs[0].text, "same text");
}

}  // namespace
}  // namespace dytrain

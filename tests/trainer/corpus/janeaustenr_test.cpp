// The R reader: unserialize is checked against bytes that R 4.2 itself wrote (serialize(x, NULL, xdr=TRUE,
// version=2)), covering UTF-8, Latin-1 and NA strings, integers, nested lists and symbol back-references.
// The Austen reader is checked on the installed package (skipped when r-cran-janeaustenr is absent).
#include <gtest/gtest.h>

#include <filesystem>

#include "trainer/corpus/janeaustenr.h"
#include "trainer/corpus/r_unserialize.h"

namespace dytrain {
namespace {

// R: l1 <- iconv("na\u00efve", "UTF-8", "latin1")
//    serialize(list(words=c("caf\u00e9", NA, l1), inner=list(k=7L)), NULL, xdr=TRUE, version=2)
const char kSerialized[] =
    "\x58\x0a\x00\x00\x00\x02\x00\x04\x02\x02\x00\x02\x03\x00\x00\x00\x02\x13\x00\x00\x00\x02\x00\x00"
    "\x00\x10\x00\x00\x00\x03\x00\x00\x80\x09\x00\x00\x00\x05\x63\x61\x66\xc3\xa9\x00\x00\x00\x09\xff"
    "\xff\xff\xff\x00\x00\x40\x09\x00\x00\x00\x05\x6e\x61\xef\x76\x65\x00\x00\x02\x13\x00\x00\x00\x01"
    "\x00\x00\x00\x0d\x00\x00\x00\x01\x00\x00\x00\x07\x00\x00\x04\x02\x00\x00\x00\x01\x00\x04\x00\x09"
    "\x00\x00\x00\x05\x6e\x61\x6d\x65\x73\x00\x00\x00\x10\x00\x00\x00\x01\x00\x04\x00\x09\x00\x00\x00"
    "\x01\x6b\x00\x00\x00\xfe\x00\x00\x04\x02\x00\x00\x01\xff\x00\x00\x00\x10\x00\x00\x00\x02\x00\x04"
    "\x00\x09\x00\x00\x00\x05\x77\x6f\x72\x64\x73\x00\x04\x00\x09\x00\x00\x00\x05\x69\x6e\x6e\x65\x72"
    "\x00\x00\x00\xfe";

TEST(RUnserialize, ReadsWhatRWrote) {
  const RValue v = r_unserialize(std::string_view(kSerialized, sizeof kSerialized - 1), "test bytes");
  ASSERT_EQ(v.type, kRVecSxp);
  ASSERT_EQ(v.elements.size(), 2u);
  const RValue* names = v.attribute("names");
  ASSERT_NE(names, nullptr);
  ASSERT_EQ(names->strings.size(), 2u);
  EXPECT_EQ(names->strings[0], "words");
  EXPECT_EQ(names->strings[1], "inner");

  const RValue& words = v.elements[0];
  ASSERT_EQ(words.type, kRStrSxp);
  ASSERT_EQ(words.strings.size(), 3u);
  EXPECT_EQ(words.strings[0], "caf\xC3\xA9");
  EXPECT_FALSE(words.strings[1].has_value());          // NA
  EXPECT_EQ(words.strings[2], "na\xC3\xAFve");         // stored as Latin-1 0xEF, returned as UTF-8

  const RValue& inner = v.elements[1];
  ASSERT_EQ(inner.type, kRVecSxp);
  ASSERT_EQ(inner.elements.size(), 1u);
  EXPECT_EQ(inner.elements[0].type, kRIntSxp);
  EXPECT_EQ(inner.elements[0].ints, std::vector<int32_t>{7});
  const RValue* inner_names = inner.attribute("names");  // its tag "names" is a back-reference (REFSXP)
  ASSERT_NE(inner_names, nullptr);
  EXPECT_EQ(inner_names->strings.at(0), "k");
}

TEST(RUnserialize, TruncatedInputNamesTheSourceAndOffset) {
  try {
    r_unserialize(std::string_view(kSerialized, 40), "my.rdb");
    FAIL() << "truncated input must throw";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("my.rdb"), std::string::npos) << msg;
    EXPECT_NE(msg.find("offset"), std::string::npos) << msg;
  }
}

TEST(JaneAustenr, SixNovelsWithKnownOpenings) {
  if (!std::filesystem::exists(std::string(kJaneAustenrDir) + "/data/Rdata.rdb")) {
    GTEST_SKIP() << "r-cran-janeaustenr is not installed "
                    "(apt-get install -y --no-install-recommends r-cran-janeaustenr)";
  }
  const std::vector<Document> novels = read_janeaustenr();
  ASSERT_EQ(novels.size(), 6u);
  // Publication order, the first line of each Gutenberg text, and sizes (bytes incl. one LF per line) that
  // R reports as sum(nchar(x, type="bytes")) + length(x).
  struct Expected {
    const char* name;
    const char* opening;
    size_t bytes;
  };
  const Expected expected[] = {
      {"sensesensibility", "SENSE AND SENSIBILITY\n", 661064 + 12624},
      {"prideprejudice", "PRIDE AND PREJUDICE\n", 671738 + 13030},
      {"mansfieldpark", "MANSFIELD PARK\n", 867931 + 15349},
      {"emma", "EMMA\n", 866793 + 16235},
      {"northangerabbey", "NORTHANGER ABBEY\n", 425555 + 7856},
      {"persuasion", "Persuasion\n", 458526 + 8328},
  };
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(novels[i].name, expected[i].name);
    EXPECT_EQ(novels[i].text.rfind(expected[i].opening, 0), 0u) << novels[i].name;
    EXPECT_EQ(novels[i].text.size(), expected[i].bytes) << novels[i].name;
  }
  EXPECT_NE(novels[1].text.find("It is a truth universally acknowledged"), std::string::npos);
  EXPECT_NE(novels[2].text.find("her \xC2\xA3" "20,000"), std::string::npos);  // the one non-ASCII line
}

TEST(JaneAustenr, MissingPackageNamesFileAndInstallLine) {
  try {
    read_janeaustenr("/nonexistent/janeaustenr");
    FAIL() << "a missing package must throw";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("/nonexistent/janeaustenr/data/Rdata.rdx"), std::string::npos) << msg;
    EXPECT_NE(msg.find("apt-get install"), std::string::npos) << msg;
    EXPECT_NE(msg.find("r-cran-janeaustenr"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace dytrain

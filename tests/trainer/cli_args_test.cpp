// Command-line numbers: the whole text is one number of the flag's type, inside its range; anything else gives a
// message naming the flag, the range and the text. Overflow is rejected, not wrapped (atoi/strtol/strtod let
// "99999999999", "3abc" or "1e300" through in one form or another).
#include <gtest/gtest.h>

#include <climits>
#include <cstdint>

#include "trainer/cli_args.h"

namespace dytrain {
namespace {

TEST(CliArgs, IntegersInRangeAreRead) {
  int v = -1;
  EXPECT_EQ(parse_int_flag("--batch", "4", 1, INT_MAX, &v), "");
  EXPECT_EQ(v, 4);
  EXPECT_EQ(parse_int_flag("--batch", "+7", 1, INT_MAX, &v), "");
  EXPECT_EQ(v, 7);
  EXPECT_EQ(parse_int_flag("--batch", "012", 1, INT_MAX, &v), "");  // decimal, not octal
  EXPECT_EQ(v, 12);
  EXPECT_EQ(parse_int_flag("--point", "0", 0, INT_MAX, &v), "");
  EXPECT_EQ(v, 0);
  EXPECT_EQ(parse_int_flag("--point", "2147483647", 0, INT_MAX, &v), "");
  EXPECT_EQ(v, INT_MAX);
  int64_t big = 0;
  EXPECT_EQ(parse_int_flag<int64_t>("--n", "9223372036854775807", 0, INT64_MAX, &big), "");
  EXPECT_EQ(big, INT64_MAX);
}

TEST(CliArgs, BadIntegersNameTheFlagAndLeaveTheValue) {
  for (const char* bad : {"99999999999", "2147483648", "-1", "0", "3abc", "abc", "", " 4", "4 ", "1e3", "1.5", "0x10",
                          "+-5", "++5", "-", "+"}) {
    int v = 42;
    const std::string err = parse_int_flag("--batch", bad, 1, INT_MAX, &v);
    EXPECT_EQ(err, std::string("--batch needs an integer from 1 to 2147483647, got '") + bad + "'") << bad;
    EXPECT_EQ(v, 42) << bad;
  }
  uint32_t u = 5;
  EXPECT_NE(parse_int_flag<uint32_t>("--n", "-1", 0, UINT32_MAX, &u), "");  // no wrap to 4294967295
  EXPECT_EQ(u, 5u);
}

TEST(CliArgs, PositiveNumbers) {
  double v = 0;
  EXPECT_EQ(parse_positive_flag("--interval", "0.5", 60, &v), "");
  EXPECT_EQ(v, 0.5);
  EXPECT_EQ(parse_positive_flag("--interval", "60", 60, &v), "");
  EXPECT_EQ(v, 60);
  for (const char* bad : {"0", "-1", "61", "1e300", "1e400", "nan", "inf", "-inf", "2s", "", "0x1p3"}) {
    double w = 7;
    EXPECT_EQ(parse_positive_flag("--interval", bad, 60, &w),
              std::string("--interval needs a number greater than 0 and at most 60, got '") + bad + "'")
        << bad;
    EXPECT_EQ(w, 7) << bad;
  }
}

}  // namespace
}  // namespace dytrain

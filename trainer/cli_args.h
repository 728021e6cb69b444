// Numbers given on the dytrain command line (--point, --smooth, --width, --interval, --batch, --seq, ...): the whole
// text must be one number (parse_number: no trailing garbage, no overflow, no wrap-around), inside the range the flag
// allows. The functions return the message for the user, naming the flag, the range and what was given; empty when
// *out was set. Callers print it with the usage and exit 2 (kExitBadInput).
#pragma once
#include <cmath>
#include <string>

#include <fmt/format.h>

#include "trainer/config/parse_number.h"

namespace dytrain {

// An integer in [min, max].
template <class Int>
std::string parse_int_flag(const std::string& flag, const std::string& text, Int min, Int max, Int* out) {
  Int v{};
  if (!parse_number(text, &v) || v < min || v > max)
    return fmt::format("{} needs an integer from {} to {}, got '{}'", flag, min, max, text);
  *out = v;
  return "";
}

// A finite number in (0, max]. `max` keeps values like --interval 1e300 from overflowing the durations built on them.
inline std::string parse_positive_flag(const std::string& flag, const std::string& text, double max, double* out) {
  double v = 0;
  if (!parse_number(text, &v) || !std::isfinite(v) || !(v > 0) || v > max)
    return fmt::format("{} needs a number greater than 0 and at most {}, got '{}'", flag, max, text);
  *out = v;
  return "";
}

}  // namespace dytrain

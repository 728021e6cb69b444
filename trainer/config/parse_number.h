// The one way dytrain reads a number from text: config values, sweep spec values and command-line flags.
//
// std::from_chars is locale-independent, accepts no leading spaces, no hex or octal prefixes, and reports overflow
// instead of saturating or wrapping; the whole text must be the number. A leading '+' is allowed because YAML allows
// it. yaml-cpp's own as<int>() reads "012" as octal 10 and its as<double>() accepts ".nan": neither is used for values
// a person typed.
#pragma once
#include <charconv>
#include <string_view>
#include <system_error>

namespace dytrain {

// True when `text` is exactly one number of type T in T's range; *out is then set. Doubles may come back as inf or
// nan ("inf", "nan" parse); callers that need a finite value check it.
template <class T>
bool parse_number(std::string_view text, T* out) {
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  if (begin != end && *begin == '+') {
    ++begin;
    if (begin != end && (*begin == '-' || *begin == '+')) return false;  // "+-5" is not a number
  }
  if (begin == end) return false;
  T value{};
  const auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr != end) return false;
  *out = value;
  return true;
}

}  // namespace dytrain

// Codepoint classes for GPT-2's pre-tokenizer and a strict UTF-8 decoder.
// The class tables are generated (tools/gen_unicode_tables.py -> unicode_class_tables.cpp) from Python's unicodedata
// rather than taken from a library, so the build needs no ICU; classify_codepoint answers ASCII from a 128-entry table
// and everything else by binary search over ~800 sorted ranges. The decoder rejects overlong forms, surrogates and
// codepoints past U+10FFFF, so callers decide what an invalid byte means (GPT-2 treats it as a lone "other" symbol).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dytrain {

enum class CharClass : uint8_t { kOther, kLetter, kNumber, kSpace };

struct CodepointRange {
  uint32_t first, last;  // inclusive
  CharClass cls;
};

extern const CodepointRange kCodepointRanges[];  // generated; sorted by first, non-overlapping
extern const int kNumCodepointRanges;

CharClass classify_non_ascii(uint32_t cp);

// Letter (General Category L*), number (N*), White_Space, or other.
inline CharClass classify_codepoint(uint32_t cp) {
  // ASCII is most text; answer it without a search.
  static constexpr CharClass kL = CharClass::kLetter, kN = CharClass::kNumber, kS = CharClass::kSpace,
                             kO = CharClass::kOther;
  static constexpr CharClass kAscii[128] = {
      kO, kO, kO, kO, kO, kO, kO, kO, kO, kS, kS, kS, kS, kS, kO, kO,  // 0x00: \t \n \v \f \r are space
      kO, kO, kO, kO, kO, kO, kO, kO, kO, kO, kO, kO, kO, kO, kO, kO,  // 0x10
      kS, kO, kO, kO, kO, kO, kO, kO, kO, kO, kO, kO, kO, kO, kO, kO,  // 0x20: ' ' is space
      kN, kN, kN, kN, kN, kN, kN, kN, kN, kN, kO, kO, kO, kO, kO, kO,  // 0x30: 0-9
      kO, kL, kL, kL, kL, kL, kL, kL, kL, kL, kL, kL, kL, kL, kL, kL,  // 0x40: A-O
      kL, kL, kL, kL, kL, kL, kL, kL, kL, kL, kL, kO, kO, kO, kO, kO,  // 0x50: P-Z
      kO, kL, kL, kL, kL, kL, kL, kL, kL, kL, kL, kL, kL, kL, kL, kL,  // 0x60: a-o
      kL, kL, kL, kL, kL, kL, kL, kL, kL, kL, kL, kO, kO, kO, kO, kO,  // 0x70: p-z
  };
  return cp < 128 ? kAscii[cp] : classify_non_ascii(cp);
}

// Decodes the UTF-8 sequence starting at s[pos] (pos < s.size()): returns its length in bytes and sets *cp, or
// returns 0 when the bytes there are not valid UTF-8.
inline int decode_utf8(uint32_t* cp, std::string_view s, size_t pos) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  int len;
  uint32_t v, min;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, v = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, v = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, v = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (s.size() - pos < static_cast<size_t>(len)) return 0;
  for (int i = 1; i < len; ++i) {
    const auto b = static_cast<unsigned char>(s[pos + i]);
    if ((b & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

}  // namespace dytrain

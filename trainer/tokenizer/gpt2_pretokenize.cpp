// The GPT-2 split regex as a hand-written matcher; see gpt2_pretokenize.h. Each branch below is one alternative of
// the regex, tried in the regex's order, so the first that matches at pos is the one the regex engine would take.
#include "trainer/tokenizer/gpt2_pretokenize.h"

#include "trainer/tokenizer/unicode_class.h"

namespace dytrain {
namespace {

struct Symbol {
  CharClass cls;
  int len;  // bytes
};

// The codepoint at text[pos]; an invalid UTF-8 byte is a 1-byte "other".
Symbol symbol_at(std::string_view text, size_t pos) {
  uint32_t cp;
  const int len = decode_utf8(&cp, text, pos);
  if (len == 0) return {CharClass::kOther, 1};
  return {classify_codepoint(cp), len};
}

// End of the run of symbols of class cls starting at pos (the symbol at pos is of that class).
size_t run_end(std::string_view text, size_t pos, CharClass cls) {
  while (pos < text.size()) {
    const Symbol s = symbol_at(text, pos);
    if (s.cls != cls) break;
    pos += s.len;
  }
  return pos;
}

// 's 't 're 've 'm 'll 'd: returns the contraction's length at pos, or 0.
size_t contraction_len(std::string_view text, size_t pos) {
  const std::string_view rest = text.substr(pos);
  if (rest.size() < 2 || rest[0] != '\'') return 0;
  const char c1 = rest[1];
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  if (rest.size() < 3) return 0;
  const char c2 = rest[2];
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  return 0;
}

}  // namespace

size_t gpt2_piece_end(std::string_view text, size_t pos) {
  if (const size_t n = contraction_len(text, pos)) return pos + n;

  // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": an optional ASCII space, then a run of one class. The space is
  // taken only when a non-space follows it; otherwise those alternatives cannot match at a space.
  if (text[pos] == ' ' && pos + 1 < text.size()) {
    const Symbol next = symbol_at(text, pos + 1);
    if (next.cls != CharClass::kSpace) return run_end(text, pos + 1, next.cls);
  }
  const Symbol first = symbol_at(text, pos);
  if (first.cls != CharClass::kSpace) return run_end(text, pos, first.cls);

  // "\s+(?!\S)": the whitespace run, less its last codepoint when a non-space follows, so that codepoint (usually a
  // space) can lead the next word. "\s+": a lone whitespace codepoint before a non-space.
  size_t end = pos, last_start = pos;
  while (end < text.size()) {
    const Symbol s = symbol_at(text, end);
    if (s.cls != CharClass::kSpace) break;
    last_start = end;
    end += s.len;
  }
  if (end == text.size() || last_start == pos) return end;
  return last_start;
}

}  // namespace dytrain

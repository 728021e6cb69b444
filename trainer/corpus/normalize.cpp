// UTF-8 validation follows the Unicode table of well-formed byte sequences (Unicode 15, table 3-7).
// Deduplication compares full texts through a hash set of views into the documents, so a hash collision
// can never drop a distinct document.
#include "trainer/corpus/normalize.h"

#include <unordered_set>

namespace dytrain {

bool is_valid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return false;
    }
    if (i + static_cast<size_t>(len) > n) return false;
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (int k = 2; k < len; ++k) {
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return false;
    }
    i += static_cast<size_t>(len);
  }
  return true;
}

std::string latin1_to_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      out.push_back(ch);
    } else {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

std::string normalize_text(std::string_view raw) {
  if (raw.substr(0, 3) == "\xEF\xBB\xBF") raw.remove_prefix(3);
  const std::string utf8 = is_valid_utf8(raw) ? std::string(raw) : latin1_to_utf8(raw);
  std::string out;
  out.reserve(utf8.size());
  for (size_t i = 0; i < utf8.size(); ++i) {
    const char c = utf8[i];
    if (c == '\0') continue;
    if (c == '\r') {
      out.push_back('\n');
      if (i + 1 < utf8.size() && utf8[i + 1] == '\n') ++i;  // CRLF is one line end
      continue;
    }
    out.push_back(c);
  }
  return out;
}

int64_t remove_duplicates(std::vector<Document>* docs) {
  std::unordered_set<std::string_view> seen;
  std::vector<Document> kept;
  kept.reserve(docs->size());
  // Views point into `docs`, which is not modified until the loop ends.
  std::vector<bool> keep(docs->size());
  for (size_t i = 0; i < docs->size(); ++i) keep[i] = seen.insert((*docs)[i].text).second;
  seen.clear();
  for (size_t i = 0; i < docs->size(); ++i) {
    if (keep[i]) kept.push_back(std::move((*docs)[i]));
  }
  const auto removed = static_cast<int64_t>(docs->size() - kept.size());
  *docs = std::move(kept);
  return removed;
}

}  // namespace dytrain

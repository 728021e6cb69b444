// Text normalization and exact deduplication. Corpora arrive as UTF-8 (Debian docs, npm data sets) or as
// legacy 8-bit text; anything that is not valid UTF-8 is read as Latin-1, the usual encoding of old English
// texts, so no byte is lost. Line ends become LF; a byte-order mark and NUL bytes are dropped.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "trainer/corpus/document.h"

namespace dytrain {

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool is_valid_utf8(std::string_view text);

std::string latin1_to_utf8(std::string_view text);

// UTF-8 with LF line ends, as described at the top of this file.
std::string normalize_text(std::string_view raw);

// Removes documents whose text equals an earlier document's text; keeps the order. Returns how many went.
int64_t remove_duplicates(std::vector<Document>* docs);

}  // namespace dytrain

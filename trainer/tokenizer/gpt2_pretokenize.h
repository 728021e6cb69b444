// GPT-2's pre-tokenizer: splits text into the pieces BPE runs on, exactly as OpenAI's regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// does with leftmost-first alternation, written by hand (std::regex has no \p{..} and is slow).
// Text is UTF-8; a byte that does not start a valid UTF-8 sequence is one "other" symbol, so every byte string splits
// (and, byte-level BPE being lossless, round-trips). The contractions are case-sensitive ASCII, as in the original.
#pragma once
#include <cstddef>
#include <string_view>

namespace dytrain {

// End (exclusive byte offset) of the piece that starts at text[pos], pos < text.size(). Pieces tile the text:
// start at 0, continue from each returned end.
size_t gpt2_piece_end(std::string_view text, size_t pos);

}  // namespace dytrain

// Tokenizing a split into llm.c shards: every document is preceded by the end-of-text token (llm.c's
// convention, so the stream starts with one and every document boundary is marked), documents stay in
// order, and the shards are re-opened afterwards to check that what was written is what was counted.
#pragma once
#include <string>
#include <vector>

#include "trainer/corpus/document.h"
#include "trainer/corpus/manifest.h"
#include "trainer/tokenizer/tokenizer.h"

namespace dytrain {

// Writes DIR/SPLIT_000000.bin, ... (at most shard_tokens each) with `threads` encoding threads.
// Returns counts with shard files relative to DIR. No documents: no shard, zero counts.
SplitInfo encode_to_shards(const Tokenizer& tokenizer, const std::vector<Document>& docs, const std::string& dir,
                           const std::string& split, int token_bytes, int64_t shard_tokens, int threads);

}  // namespace dytrain

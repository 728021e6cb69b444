// Reads OpenAI's GPT-2 tokenizer files: encoder.json (token -> id) and vocab.bpe (merges, best first).
// Both spell each byte as a printable codepoint (GPT-2's bytes_to_unicode, so that tokens hold no spaces or control
// characters); this reader undoes that, so the rest of the tokenizer sees raw bytes. Everything is validated here,
// with errors naming the file and the byte offset or line, so the tokenizer can trust what it gets.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dytrain {

struct Gpt2Merge {
  uint32_t left, right, merged;  // token ids: left's bytes followed by right's make merged
};

struct Gpt2Files {
  std::vector<std::string> tokens;  // (vocab) raw bytes of each id; ids are dense, every single byte is a token
  // In vocab.bpe order: index = rank, lower merges first. No pair repeats, and each merge's parts are single bytes
  // or made by an earlier merge.
  std::vector<Gpt2Merge> merges;
  uint32_t eot_id = 0;              // the id of "<|endoftext|>"
};

// dir holds encoder.json and vocab.bpe. Throws std::runtime_error naming the file (and offset or line) and saying how
// to get the files when one is missing or malformed.
Gpt2Files read_gpt2_files(const std::string& dir);

}  // namespace dytrain

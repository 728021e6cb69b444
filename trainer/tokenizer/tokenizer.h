// The tokenizer interface shared by SentencePiece (trained here or loaded) and GPT-2 BPE (OpenAI's files).
// Encoding turns a document into ids; the corpus pipeline appends eot_id() between documents.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dytrain {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<uint32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(const std::vector<uint32_t>& ids) const = 0;
  virtual int vocab_size() const = 0;   // ids are in [0, vocab_size)
  virtual uint32_t eot_id() const = 0;  // the end-of-text id that separates documents
  virtual std::string name() const = 0; // e.g. "sentencepiece:sp4096", "gpt2"
};

}  // namespace dytrain

// SentencePiece tokenizer: trains a LLaMA-style BPE model with byte fallback, or loads any existing .model.
// Training keeps the text as is (identity normalization, no dummy prefix, no whitespace folding) so that
// decode(encode(text)) == text for every valid UTF-8 string; bytes of unseen characters become <0xNN> pieces.
// The end-of-text token is a control symbol "<|endoftext|>": encoding text never produces it, and decode()
// renders it as the literal string so samples show document boundaries (as GPT-2 does).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "trainer/tokenizer/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace dytrain {

constexpr const char* kEotPiece = "<|endoftext|>";

struct SentencePieceTrainOptions {
  int vocab_size = 4096;             // total pieces: <unk>, eot, 256 byte pieces, characters and merges
  int64_t max_sentences = 2000000;   // cap on training lines, sampled deterministically with seed
  uint64_t seed = 1234;              // picks the sampled lines when the corpus has more than max_sentences
  int num_threads = 2;
  int max_sentence_bytes = 4192;     // longer lines are cut into pieces of this size for training
};

class SentencePieceTokenizer : public Tokenizer {
 public:
  // Loads a .model file; tag names it in name() ("sentencepiece:<tag>"). Throws naming the file.
  static std::unique_ptr<SentencePieceTokenizer> load(const std::string& model_path, const std::string& tag);

  // Trains a BPE model on the lines of `documents` and writes it to model_path (temporary name, then rename).
  // Throws naming model_path when SentencePiece refuses (for example a vocabulary too large for the text).
  static void train(const std::string& model_path, const std::vector<std::string_view>& documents,
                    const SentencePieceTrainOptions& options);

  ~SentencePieceTokenizer() override;
  std::vector<uint32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<uint32_t>& ids) const override;
  int vocab_size() const override;
  uint32_t eot_id() const override { return eot_id_; }
  std::string name() const override { return "sentencepiece:" + tag_; }

 private:
  SentencePieceTokenizer() = default;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string path_;
  std::string tag_;
  uint32_t eot_id_ = 0;
  bool split_lines_ = false;  // encode line by line (exact for models trained here; see load())
};

}  // namespace dytrain

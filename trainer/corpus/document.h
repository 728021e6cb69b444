// A document of a corpus: one novel, one file, one book. The pipeline separates documents with the
// tokenizer's end-of-text token, deduplicates them and splits them between training and validation.
#pragma once
#include <string>

namespace dytrain {

struct Document {
  std::string name;  // unique within a recipe: a novel name, a file path, "<npm package>/<file>", a book name
  std::string text;  // UTF-8 with LF line ends once normalized
};

}  // namespace dytrain

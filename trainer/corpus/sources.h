// Reading the sources of a recipe into normalized documents. Listing a source's inputs (files and package
// versions) is separate from reading them, so an unchanged corpus is detected without reading it and a
// missing package is reported before any work starts.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "trainer/corpus/document.h"
#include "trainer/corpus/recipe.h"

namespace dytrain {

struct SourceInputs {
  std::vector<std::string> files;                              // everything the source reads
  std::vector<std::pair<std::string, std::string>> packages;  // (package, installed version)
};

// Throws naming the missing file or pattern and the apt-get / npm line that installs it.
SourceInputs list_source_inputs(const SourceSpec& source);

// The source's documents, normalized to UTF-8; documents that are empty or blank are dropped.
std::vector<Document> read_source(const SourceSpec& source, const SourceInputs& inputs);

}  // namespace dytrain

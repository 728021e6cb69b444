// The validation split: documents named in the recipe, plus a seeded fraction of the rest. The fraction is
// picked by ranking documents on a hash of (seed, name), so a document's side does not depend on the order
// sources were read in or on which other documents exist.
#pragma once
#include <string>
#include <vector>

#include "trainer/corpus/document.h"
#include "trainer/corpus/recipe.h"

namespace dytrain {

// Moves the validation documents out of *docs (which keeps the training ones, in order) and returns them in
// their original order. Throws naming recipe_path when a name matches no document or nothing is left to train.
std::vector<Document> split_validation(std::vector<Document>* docs, const ValidationSpec& spec,
                                       const std::string& recipe_path);

}  // namespace dytrain

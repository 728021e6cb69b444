// The King James Bible from Debian's bible-kjv (the `bible` program) and bible-kjv-text (its data file).
// The data file uses the program's own compression, so we run the program once over the whole text and
// split its output into the 66 books, one document each, named as the program prints them ("Genesis").
#pragma once
#include <string>
#include <vector>

#include "trainer/corpus/document.h"

namespace dytrain {

constexpr const char* kBibleProgram = "/usr/bin/bible";
constexpr const char* kBibleData = "/usr/lib/bible.data";

std::vector<Document> read_bible_kjv(const std::string& program = kBibleProgram);

// The program and its data file; throws naming the missing one and the apt-get line.
std::vector<std::string> bible_kjv_files(const std::string& program = kBibleProgram);

}  // namespace dytrain

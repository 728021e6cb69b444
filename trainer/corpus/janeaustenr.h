// Jane Austen's six novels from the Debian/Ubuntu package r-cran-janeaustenr, read straight from its R data
// (no R runtime needed). Each novel is one document named as in the package (emma, persuasion, ...), in
// publication order; its lines are joined with LF, so blank lines keep marking paragraphs.
#pragma once
#include <string>
#include <vector>

#include "trainer/corpus/document.h"

namespace dytrain {

constexpr const char* kJaneAustenrDir = "/usr/lib/R/site-library/janeaustenr";

// Reads PACKAGE_DIR/data/Rdata.{rdx,rdb}. Throws naming the missing file and the apt-get line when absent.
std::vector<Document> read_janeaustenr(const std::string& package_dir = kJaneAustenrDir);

// The files read_janeaustenr opens (for change detection).
std::vector<std::string> janeaustenr_files(const std::string& package_dir = kJaneAustenrDir);

}  // namespace dytrain

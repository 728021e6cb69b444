// The program prints "Book N" on its own line before every chapter, then "  V text" per verse; `-l` with a
// huge width turns off its line wrapping so every verse is one line. A new book starts at each "... 1"
// chapter header; the headers stay in the text (they are part of the book's structure).
#include "trainer/corpus/bible_kjv.h"

#include <cstdio>
#include <filesystem>
#include <stdexcept>

namespace dytrain {
namespace {

// "Genesis 1" -> "Genesis", "1 Samuel 1" -> "1 Samuel"; anything else (verse, blank line) -> "".
std::string first_chapter_book(const std::string& line) {
  if (line.size() < 3 || line[0] == ' ' || line.compare(line.size() - 2, 2, " 1") != 0) return "";
  return line.substr(0, line.size() - 2);
}

}  // namespace

std::vector<std::string> bible_kjv_files(const std::string& program) {
  const std::pair<std::string, std::string> needed[] = {{program, "bible-kjv"}, {kBibleData, "bible-kjv-text"}};
  for (const auto& [file, package] : needed) {
    if (!std::filesystem::is_regular_file(file)) {
      throw std::runtime_error("King James Bible file " + file + " not found: install it with "
                               "`apt-get install -y --no-install-recommends " + package + "`");
    }
  }
  return {program, kBibleData};
}

std::vector<Document> read_bible_kjv(const std::string& program) {
  bible_kjv_files(program);
  const std::string command = "'" + program + "' -l 1000000 'gen1:1-rev22:21' 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + program + "; reinstall bible-kjv");
  std::string out;
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = pclose(pipe);
  if (status != 0) {
    throw std::runtime_error(program + " failed (status " + std::to_string(status) + "): " + out.substr(0, 200) +
                             "; reinstall bible-kjv and bible-kjv-text");
  }
  std::vector<Document> books;
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    const std::string line = out.substr(start, end - start);
    const std::string book = first_chapter_book(line);
    if (!book.empty()) books.push_back(Document{book, {}});
    if (!books.empty() && !(books.back().text.empty() && line.empty())) books.back().text += line + "\n";
    start = end + 1;
  }
  if (books.size() != 66) {
    throw std::runtime_error(program + " printed " + std::to_string(books.size()) +
                             " books instead of 66; reinstall bible-kjv and bible-kjv-text");
  }
  return books;
}

}  // namespace dytrain

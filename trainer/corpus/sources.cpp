// One function per source kind; text_files and npm_dataset share the file reader and differ only in where
// their patterns are rooted and which package manager the error message points to.
#include "trainer/corpus/sources.h"

#include <filesystem>
#include <stdexcept>

#include "trainer/corpus/bible_kjv.h"
#include "trainer/corpus/janeaustenr.h"
#include "trainer/corpus/normalize.h"
#include "trainer/corpus/packages.h"
#include "trainer/corpus/text_files.h"

namespace dytrain {
namespace {

std::string npm_package_dir(const SourceSpec& s) { return s.path + "/node_modules/" + s.package; }

bool is_blank(const std::string& text) { return text.find_first_not_of(" \t\n\f\v") == std::string::npos; }

}  // namespace

SourceInputs list_source_inputs(const SourceSpec& s) {
  SourceInputs in;
  if (s.kind == "janeaustenr") {
    in.files = janeaustenr_files(s.path);
    in.packages = {{"r-cran-janeaustenr", dpkg_version("r-cran-janeaustenr")}};
  } else if (s.kind == "bible_kjv") {
    in.files = bible_kjv_files(s.path);
    in.packages = {{"bible-kjv", dpkg_version("bible-kjv")}, {"bible-kjv-text", dpkg_version("bible-kjv-text")}};
  } else if (s.kind == "text_files") {
    for (const std::string& pattern : s.globs) {
      std::vector<std::string> files = expand_glob(pattern);
      if (files.empty()) {
        throw std::runtime_error("source " + s.label() + ": no file matches " + pattern +
                                 (s.package.empty() ? "; check the pattern"
                                                    : "; install the package with " + apt_install_hint(s.package)));
      }
      in.files.insert(in.files.end(), files.begin(), files.end());
    }
    if (!s.package.empty()) in.packages = {{s.package, dpkg_version(s.package)}};
  } else if (s.kind == "npm_dataset") {
    const std::string dir = npm_package_dir(s);
    if (!std::filesystem::is_directory(dir)) {
      throw std::runtime_error("npm package directory " + dir + " not found: install it with " +
                               npm_install_hint(s.path, s.package));
    }
    for (const std::string& pattern : s.globs) {
      std::vector<std::string> files = expand_glob(dir + "/" + pattern);
      if (files.empty()) {
        throw std::runtime_error("source " + s.label() + ": no file matches " + dir + "/" + pattern +
                                 "; reinstall with " + npm_install_hint(s.path, s.package));
      }
      in.files.insert(in.files.end(), files.begin(), files.end());
    }
    in.packages = {{s.package, npm_version(s.path, s.package)}};
  } else {
    throw std::runtime_error("unknown source kind `" + s.kind + "`");
  }
  return in;
}

std::vector<Document> read_source(const SourceSpec& s, const SourceInputs& inputs) {
  std::vector<Document> docs;
  if (s.kind == "janeaustenr") {
    docs = read_janeaustenr(s.path);
  } else if (s.kind == "bible_kjv") {
    docs = read_bible_kjv(s.path);
  } else {
    const std::string strip = s.kind == "npm_dataset" ? s.path + "/node_modules/" : "";
    for (const std::string& file : inputs.files) {
      // npm documents are named "<package>/<file in package>", text files by their path.
      const std::string name = !strip.empty() && file.rfind(strip, 0) == 0 ? file.substr(strip.size()) : file;
      docs.push_back(Document{name, read_file_bytes(file)});
    }
  }
  std::vector<Document> kept;
  kept.reserve(docs.size());
  for (Document& d : docs) {
    d.text = normalize_text(d.text);
    if (!is_blank(d.text)) kept.push_back(std::move(d));
  }
  return kept;
}

}  // namespace dytrain

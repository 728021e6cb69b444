// Recursive `**` matching is ours (glob(3) has none); fnmatch without FNM_PATHNAME lets `*` cross
// directories, which is what `**/*.rst` means to users. Symbolic links to directories are not followed, so
// a package tree with a loop cannot hang the walk.
#include "trainer/corpus/text_files.h"

#include <fnmatch.h>
#include <glob.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace dytrain {

namespace fs = std::filesystem;

std::vector<std::string> expand_glob(const std::string& pattern) {
  std::vector<std::string> files;
  const size_t star2 = pattern.find("**");
  if (star2 != std::string::npos) {
    std::string root = pattern.substr(0, star2);
    std::string rest = pattern.substr(star2 + 2);
    while (!rest.empty() && rest.front() == '/') rest.erase(0, 1);
    if (rest.empty()) rest = "*";
    if (root.find_first_of("*?[") != std::string::npos) {
      throw std::runtime_error("glob `" + pattern + "`: wildcards before `**` are not supported; "
                               "write a literal directory before `**`");
    }
    if (root.empty()) root = ".";
    std::error_code ec;
    if (!fs::is_directory(root, ec)) return files;
    for (fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec), end;
         it != end; it.increment(ec)) {
      if (ec) break;
      if (!it->is_regular_file(ec)) continue;
      const std::string rel = it->path().lexically_relative(root).generic_string();
      if (fnmatch(rest.c_str(), rel.c_str(), 0) == 0) files.push_back(it->path().generic_string());
    }
  } else {
    glob_t g{};
    if (glob(pattern.c_str(), 0, nullptr, &g) == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) {
        if (fs::is_regular_file(g.gl_pathv[i])) files.emplace_back(g.gl_pathv[i]);
      }
    }
    globfree(&g);
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string read_gzip_file(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path + ": check that it exists and is readable");
  std::string out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  const bool failed = n < 0;
  gzclose(f);
  if (failed) throw std::runtime_error("cannot decompress " + path + ": the file is not valid gzip");
  return out;
}

std::string read_file_bytes(const std::string& path) {
  if (path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0) return read_gzip_file(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path + ": check that it exists and is readable");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace dytrain

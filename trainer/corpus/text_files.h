// Plain text files as documents: glob patterns (with `**` for any depth) expanded to a sorted file list,
// each file read whole, gzip-compressed files (*.gz, as Debian ships docs) decompressed on the fly.
#pragma once
#include <string>
#include <vector>

namespace dytrain {

// Regular files matching `pattern`, sorted. `DIR/**/REST` walks DIR recursively and matches REST against each
// path relative to DIR, where `*` also crosses `/` (so `docs/**/*.rst` finds docs/a.rst and docs/x/y/b.rst).
// Other patterns follow glob(3). A pattern matching nothing gives an empty list.
std::vector<std::string> expand_glob(const std::string& pattern);

// The decompressed bytes of a gzip file. Throws naming the file.
std::string read_gzip_file(const std::string& path);

// The file's bytes; *.gz files decompressed. Throws naming the file.
std::string read_file_bytes(const std::string& path);

}  // namespace dytrain

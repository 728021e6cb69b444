// Reading the index and blocks of an R lazy-load database with zlib. The index is small; each block is read
// with one seek and inflated in one call because its uncompressed size is stored in front of it.
#include "trainer/corpus/r_lazyload.h"

#include <zlib.h>

#include <fstream>
#include <stdexcept>

#include "trainer/corpus/text_files.h"

namespace dytrain {
namespace {

int64_t as_offset(const RValue& v, size_t i) {
  if (v.type == kRIntSxp && i < v.ints.size()) return v.ints[i];
  if (v.type == kRRealSxp && i < v.reals.size()) return static_cast<int64_t>(v.reals[i]);
  return -1;
}

}  // namespace

RLazyLoadDB::RLazyLoadDB(std::string base) : base_(std::move(base)) {
  const std::string rdx = base_ + ".rdx";
  const RValue index = r_unserialize(read_gzip_file(rdx), rdx);
  const RValue* top_names = index.attribute("names");
  const RValue* variables = nullptr;
  const RValue* compressed = nullptr;
  for (size_t i = 0; top_names && i < top_names->strings.size() && i < index.elements.size(); ++i) {
    if (top_names->strings[i] == "variables") variables = &index.elements[i];
    if (top_names->strings[i] == "compressed") compressed = &index.elements[i];
  }
  if (!variables || variables->type != kRVecSxp) {
    throw std::runtime_error(rdx + ": no `variables` list in the index; not an R lazy-load database");
  }
  // `compressed` is TRUE (zlib) or 2 / 3 (bzip2 / xz); only zlib is read here.
  if (compressed && !compressed->ints.empty() && compressed->ints[0] != 1) {
    throw std::runtime_error(rdx + ": compression type " + std::to_string(compressed->ints[0]) +
                             " (bzip2/xz) is not supported; only zlib-compressed databases are");
  }
  const RValue* names = variables->attribute("names");
  if (!names || names->strings.size() != variables->elements.size()) {
    throw std::runtime_error(rdx + ": the variables list has no names");
  }
  for (size_t i = 0; i < names->strings.size(); ++i) {
    const RValue& where = variables->elements[i];
    const int64_t offset = as_offset(where, 0), length = as_offset(where, 1);
    if (offset < 0 || length < 5) throw std::runtime_error(rdx + ": bad offset/length for a variable");
    names_.push_back(names->strings[i].value_or("NA"));
    blocks_.emplace_back(offset, length);
  }
}

RValue RLazyLoadDB::get(const std::string& name) const {
  const std::string rdb = base_ + ".rdb";
  size_t i = 0;
  while (i < names_.size() && names_[i] != name) ++i;
  if (i == names_.size()) throw std::runtime_error(rdb + ": no variable named `" + name + "`");
  const auto [offset, length] = blocks_[i];
  std::ifstream in(rdb, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + rdb);
  std::string block(static_cast<size_t>(length), '\0');
  in.seekg(offset);
  in.read(block.data(), length);
  if (!in) throw std::runtime_error(rdb + ": block of `" + name + "` lies past the end of the file");
  const auto* p = reinterpret_cast<const unsigned char*>(block.data());
  const uLongf expected = (uLongf{p[0]} << 24) | (uLongf{p[1]} << 16) | (uLongf{p[2]} << 8) | p[3];
  std::string raw(expected, '\0');
  uLongf got = expected;
  const int rc = uncompress(reinterpret_cast<Bytef*>(raw.data()), &got, p + 4, static_cast<uLong>(length - 4));
  if (rc != Z_OK || got != expected) {
    throw std::runtime_error(rdb + ": block of `" + name + "` does not inflate (zlib error " + std::to_string(rc) +
                             "); reinstall the package that ships it");
  }
  return r_unserialize(raw, rdb + " (" + name + ")");
}

}  // namespace dytrain

// An R lazy-load database, the form in which R packages ship their data sets: BASE.rdx is a gzip-compressed
// serialized index (variable name -> offset and length in BASE.rdb), and every object in BASE.rdb is a block
// of a 4-byte big-endian uncompressed size followed by a zlib stream of the serialized object. Only
// zlib-compressed databases (R's default, `compressed: TRUE`) are read; bzip2/xz ones throw naming the file.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/corpus/r_unserialize.h"

namespace dytrain {

class RLazyLoadDB {
 public:
  // `base` is the path without extension, e.g. /usr/lib/R/site-library/janeaustenr/data/Rdata.
  explicit RLazyLoadDB(std::string base);
  const std::vector<std::string>& names() const { return names_; }
  RValue get(const std::string& name) const;  // throws naming the database when `name` is absent

 private:
  std::string base_;
  std::vector<std::string> names_;
  std::vector<std::pair<int64_t, int64_t>> blocks_;  // (offset, length) in BASE.rdb, parallel to names_
};

}  // namespace dytrain

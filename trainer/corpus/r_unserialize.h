// Just enough of R's unserialize (XDR format, versions 2 and 3) to read data sets of character vectors:
// NULL, symbols, pairlists (attributes), character/logical/integer/double vectors and generic lists.
// Anything else (closures, environments, ALTREP, bytecode) throws naming the type and the input, because
// a data package holding such objects is not text we know how to train on.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dytrain {

struct RValue {
  int type = 0;                                   // R's SEXPTYPE: 0 NULL, 1 symbol, 16 character, 19 list, ...
  std::string symbol;                             // type 1: the symbol's name
  std::vector<std::optional<std::string>> strings;  // type 16 (nullopt is NA), UTF-8
  std::vector<int32_t> ints;                      // types 10 (logical) and 13 (integer)
  std::vector<double> reals;                      // type 14
  std::vector<RValue> elements;                   // type 19 (list) and the values of a pairlist (type 2)
  std::vector<std::string> tags;                  // type 2: the tag of each pairlist value
  std::vector<std::pair<std::string, RValue>> attributes;

  // The attribute `name` (e.g. "names"), or nullptr.
  const RValue* attribute(const std::string& name) const;
};

constexpr int kRNilSxp = 0, kRSymSxp = 1, kRListSxp = 2, kRLglSxp = 10, kRIntSxp = 13, kRRealSxp = 14,
              kRStrSxp = 16, kRVecSxp = 19;

// Unserializes one object from `bytes` (starting with "X\n"). `what` names the input in error messages.
RValue r_unserialize(std::string_view bytes, const std::string& what);

}  // namespace dytrain

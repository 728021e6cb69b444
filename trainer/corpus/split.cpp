// FNV-1a then splitmix64 give a fixed, portable hash (std::hash differs between standard libraries).
#include "trainer/corpus/split.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <unordered_map>

namespace dytrain {
namespace {

uint64_t rank_hash(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ULL;
  uint64_t x = h ^ (seed + 0x9e3779b97f4a7c15ULL);
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

std::vector<Document> split_validation(std::vector<Document>* docs, const ValidationSpec& spec,
                                       const std::string& recipe_path) {
  std::vector<bool> is_val(docs->size(), false);
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < docs->size(); ++i) index.emplace((*docs)[i].name, i);
  for (const std::string& name : spec.names) {
    const auto it = index.find(name);
    if (it == index.end()) {
      std::string some;
      for (size_t i = 0; i < docs->size() && i < 8; ++i) some += (i ? ", " : "") + (*docs)[i].name;
      throw std::runtime_error("data recipe " + recipe_path + ": validation.names: no document named `" + name +
                               "`; documents are named like: " + some);
    }
    is_val[it->second] = true;
  }
  if (spec.fraction > 0.0) {
    std::vector<std::pair<uint64_t, size_t>> ranked;
    for (size_t i = 0; i < docs->size(); ++i) {
      if (!is_val[i]) ranked.emplace_back(rank_hash(spec.seed, (*docs)[i].name), i);
    }
    // At least one document when a fraction is asked for, as long as one stays for training.
    auto take = static_cast<size_t>(std::llround(spec.fraction * static_cast<double>(ranked.size())));
    take = std::max<size_t>(take, 1);
    take = std::min(take, ranked.size() > 0 ? ranked.size() - 1 : 0);
    std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(take), ranked.end());
    for (size_t k = 0; k < take; ++k) is_val[ranked[k].second] = true;
  }
  std::vector<Document> train, val;
  for (size_t i = 0; i < docs->size(); ++i) ((is_val[i]) ? val : train).push_back(std::move((*docs)[i]));
  if (train.empty()) {
    throw std::runtime_error("data recipe " + recipe_path + ": validation takes every document; "
                             "nothing is left to train on: hold out fewer documents");
  }
  *docs = std::move(train);
  return val;
}

}  // namespace dytrain

#include "trainer/model/params.h"

#include <stdexcept>

namespace dytrain {

const char* to_string(ParamGroup g) {
  switch (g) {
    case ParamGroup::matrices: return "matrices";
    case ParamGroup::embeddings: return "embeddings";
    case ParamGroup::dyt_alpha: return "dyt_alpha";
    case ParamGroup::dyt_gamma_beta: return "dyt_gamma_beta";
    case ParamGroup::embed_scale: return "embed_scale";
  }
  return "?";
}

int64_t ParamTable::add(const std::string& name, std::vector<int64_t> shape, ParamGroup group) {
  if (find(name)) throw std::logic_error("parameter table: duplicate tensor " + name);
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  specs_.push_back(ParamSpec{name, std::move(shape), group, total_, numel});
  total_ += numel;
  return specs_.back().offset;
}

const ParamSpec* ParamTable::find(const std::string& name) const {
  for (const ParamSpec& s : specs_)
    if (s.name == name) return &s;
  return nullptr;
}

const ParamSpec& ParamTable::at(const std::string& name) const {
  if (const ParamSpec* s = find(name)) return *s;
  throw std::out_of_range("parameter table: no tensor named " + name);
}

}  // namespace dytrain

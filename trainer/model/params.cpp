#include "trainer/model/params.h"

#include <algorithm>
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

int64_t ParamTable::add(const std::string& name, std::vector<int64_t> full_shape, ParamGroup group, TpSplit split,
                        int tp) {
  if (find(name)) throw std::logic_error("parameter table: duplicate tensor " + name);
  std::vector<int64_t> shape = full_shape;
  if (split != TpSplit::replicated && tp > 1) {
    const size_t dim = split == TpSplit::rows ? 0 : 1;
    if (shape.size() != 2 || shape[dim] % tp != 0)
      throw std::logic_error("parameter table: " + name + " cannot be split " + std::to_string(tp) + " ways");
    shape[dim] /= tp;
  }
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const int64_t offset = (total_ + kParamAlignElems - 1) / kParamAlignElems * kParamAlignElems;
  specs_.push_back(ParamSpec{name, std::move(shape), std::move(full_shape), group, split, offset, numel});
  total_ = offset + numel;
  return specs_.back().offset;
}

// Row blocks are contiguous in the whole tensor; column blocks are a strided sub-matrix: row i of the block is
// columns [rank * cols, (rank + 1) * cols) of row i.
void take_tp_block(float* local, const float* full, const ParamSpec& s, int rank) {
  if (s.split == TpSplit::cols && s.shape != s.full_shape) {
    const int64_t rows = s.shape[0], cols = s.shape[1], full_cols = s.full_shape[1];
    for (int64_t i = 0; i < rows; ++i) std::copy_n(full + i * full_cols + rank * cols, cols, local + i * cols);
  } else {
    const int64_t begin = s.shape == s.full_shape ? 0 : rank * s.numel;
    std::copy_n(full + begin, s.numel, local);
  }
}

void put_tp_block(float* full, const float* local, const ParamSpec& s, int rank) {
  if (s.split == TpSplit::cols && s.shape != s.full_shape) {
    const int64_t rows = s.shape[0], cols = s.shape[1], full_cols = s.full_shape[1];
    for (int64_t i = 0; i < rows; ++i) std::copy_n(local + i * cols, cols, full + i * full_cols + rank * cols);
  } else {
    const int64_t begin = s.shape == s.full_shape ? 0 : rank * s.numel;
    std::copy_n(local, s.numel, full + begin);
  }
}

int64_t ParamTable::parameters() const {
  int64_t n = 0;
  for (const ParamSpec& s : specs_) n += s.numel;
  return n;
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

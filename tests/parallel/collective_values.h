// Known per-rank inputs for the collective tests of every backend (comm_test.cpp on host buffers, staged_comm_test.cpp
// on device buffers): rank r contributes r + 1 + j at element j, so the sum over P ranks is P(P+1)/2 + P*j, the
// average that sum / P and the max P + j. Small integers, exact in float and double.
#pragma once
#include <cstdint>
#include <vector>

#include "parallel/comm.h"

namespace dytrain::test {

// Ragged sizes: empty, one element, odd, and larger.
inline constexpr int64_t kSizes[] = {0, 1, 3, 17, 1000};
inline constexpr ReduceOp kOps[] = {ReduceOp::sum, ReduceOp::avg, ReduceOp::max};

// Element j of rank r's input: r + 1 + j.
template <typename T>
std::vector<T> contribution(int rank, int64_t n) {
  std::vector<T> v(n);
  for (int64_t j = 0; j < n; ++j) v[j] = static_cast<T>(rank + 1 + j);
  return v;
}

// The reduction over ranks 0 .. size-1 of element j of contribution().
template <typename T>
T reduced(ReduceOp op, int size, int64_t j) {
  const T sum = static_cast<T>(size * (size + 1) / 2 + static_cast<int64_t>(size) * j);
  if (op == ReduceOp::sum) return sum;
  if (op == ReduceOp::avg) return sum / static_cast<T>(size);
  return static_cast<T>(size + j);
}

}  // namespace dytrain::test

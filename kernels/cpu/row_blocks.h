// Deterministic per-channel reductions over rows, shared by the norm ops' parameter gradients and moments.
// Rows are cut into fixed blocks of kRowBlock rows; each block sums its rows into its own partial (in double), and
// the partials are then added block by block in order. The block size does not depend on the thread count, so the
// result is bit-identical with 1 or 64 threads (an OpenMP reduction clause would not be).
#pragma once
#include <cstdint>

namespace dytrain::cpu::detail {

constexpr int64_t kRowBlock = 32;

inline int64_t row_block_count(int64_t N) { return (N + kRowBlock - 1) / kRowBlock; }

// out (C) += sum over b of partials (nblocks, C), summed in block order in double, rounded once.
inline void add_block_partials(float* out, const double* partials, int64_t nblocks, int C) {
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; ++c) {
    double s = 0.0;
    for (int64_t b = 0; b < nblocks; ++b) s += partials[b * C + c];
    out[c] += static_cast<float>(s);
  }
}

// Sums per-row (or per-block) scalars in order: deterministic whatever the thread count that produced them.
inline double sum_in_order(const double* parts, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += parts[i];
  return s;
}

}  // namespace dytrain::cpu::detail

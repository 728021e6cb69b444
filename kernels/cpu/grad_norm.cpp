// Squared L2 norm for gradient clipping. The input is cut into fixed chunks of kChunk elements; each chunk is summed
// in double by one thread and the chunk sums are added in order. Chunk boundaries do not depend on the thread count,
// so the result (and therefore the clip factor and the whole training trajectory) is bit-identical with any
// OMP_NUM_THREADS.
#include "kernels/cpu/grad_norm.h"

#include <algorithm>
#include <vector>

namespace dytrain::cpu {

namespace {
constexpr int64_t kChunk = 4096;
}

double sum_squares(const float* x, int64_t n) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(static_cast<size_t>(chunks));
#pragma omp parallel for schedule(static)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t end = std::min(n, (ch + 1) * kChunk);
    double s = 0.0;
    for (int64_t i = ch * kChunk; i < end; ++i) s += static_cast<double>(x[i]) * x[i];
    part[ch] = s;
  }
  double total = 0.0;
  for (int64_t ch = 0; ch < chunks; ++ch) total += part[ch];
  return total;
}

}  // namespace dytrain::cpu

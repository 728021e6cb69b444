// Token embedding times the learnable scalar embed_scale. Forward is a parallel row gather. Backward scatters rows
// into the table; several positions may hold the same token, so instead of atomics the work is split over channel
// ranges: each thread owns a slice of columns of the whole table and walks the tokens in order, so every table
// element receives its contributions in token order whatever the thread count. dscale is per-row double partials
// summed in row order. Token ids are not range-checked here (the signature carries no V): callers must validate
// them against vocab_size, once per batch, where the tokens enter (the data loader).
#include "kernels/cpu/embedding.h"

#include <algorithm>
#include <vector>

namespace dytrain::cpu {

namespace {
constexpr int kChannelSlice = 32;  // columns per backward work item: one 128-byte run per row
}

void embedding_forward(float* out, const int32_t* tokens, const float* table, float scale, int64_t N, int C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* row = table + static_cast<int64_t>(tokens[n]) * C;
    float* o = out + n * C;
    for (int c = 0; c < C; ++c) o[c] = scale * row[c];
  }
}

void embedding_backward(float* dtable, float* dscale, const float* dout, const int32_t* tokens, const float* table,
                        float scale, int64_t N, int C) {
  const int slices = (C + kChannelSlice - 1) / kChannelSlice;
#pragma omp parallel for schedule(static)
  for (int sl = 0; sl < slices; ++sl) {
    const int c0 = sl * kChannelSlice;
    const int c1 = std::min(C, c0 + kChannelSlice);
    for (int64_t n = 0; n < N; ++n) {
      float* d = dtable + static_cast<int64_t>(tokens[n]) * C;
      const float* g = dout + n * C;
      for (int c = c0; c < c1; ++c) d[c] += scale * g[c];
    }
  }
  if (!dscale) return;
  std::vector<double> rows(static_cast<size_t>(N));
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* row = table + static_cast<int64_t>(tokens[n]) * C;
    const float* g = dout + n * C;
    double s = 0.0;
    for (int c = 0; c < C; ++c) s += static_cast<double>(g[c]) * row[c];
    rows[n] = s;
  }
  double s = 0.0;
  for (int64_t n = 0; n < N; ++n) s += rows[n];
  *dscale += static_cast<float>(s);
}

}  // namespace dytrain::cpu

// RMSNorm forward and backward, the baseline DyT is compared against.
// Per-row mean of squares in double; rstd saved per row for backward. With y = x r w and r = (mean(x^2) + eps)^-1/2:
//   dx = r (w dy) - x r^3 / C * sum_j(w_j dy_j x_j);   dweight = sum_rows dy x r.
// dweight goes through fixed row blocks (row_blocks.h), so it is deterministic whatever the thread count; the input
// moments are per-row double partials summed in row order.
#include "kernels/cpu/rmsnorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/row_blocks.h"

namespace dytrain::cpu {

void rmsnorm_forward(float* y, float* rstd, const float* x, const float* weight, float eps, int64_t N, int C,
                     SiteMoments* moments) {
  std::vector<double> rows(moments ? static_cast<size_t>(N) * 2 : 0);  // (N, 2): sum, sum_sq
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x + n * C;
    float* yr = y + n * C;
    double s = 0.0, s2 = 0.0;
    for (int c = 0; c < C; ++c) {
      const double v = xr[c];
      s += v;
      s2 += v * v;
    }
    const float r = static_cast<float>(1.0 / std::sqrt(s2 / C + eps));
    rstd[n] = r;
    for (int c = 0; c < C; ++c) yr[c] = xr[c] * r * weight[c];
    if (moments) {
      rows[n * 2 + 0] = s;
      rows[n * 2 + 1] = s2;
    }
  }
  if (!moments) return;
  double s = 0.0, s2 = 0.0;
  for (int64_t n = 0; n < N; ++n) {
    s += rows[n * 2 + 0];
    s2 += rows[n * 2 + 1];
  }
  moments->sum += s;
  moments->sum_sq += s2;
  moments->count += static_cast<double>(N) * C;
}

void rmsnorm_backward(float* dx, float* dweight, const float* dy, const float* x, const float* weight,
                      const float* rstd, int64_t N, int C) {
  const int64_t nblocks = detail::row_block_count(N);
  std::vector<double> dw_part(static_cast<size_t>(nblocks) * C, 0.0);  // (nblocks, C)

#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    double* dw = dw_part.data() + blk * C;
    const int64_t n_end = std::min(N, (blk + 1) * detail::kRowBlock);
    for (int64_t n = blk * detail::kRowBlock; n < n_end; ++n) {
      const float* xr = x + n * C;
      const float* dyr = dy + n * C;
      float* dxr = dx + n * C;
      const float r = rstd[n];
      double dot = 0.0;  // sum_j w_j dy_j x_j
      for (int c = 0; c < C; ++c) {
        dot += static_cast<double>(weight[c] * dyr[c]) * xr[c];
        dw[c] += static_cast<double>(dyr[c]) * (xr[c] * r);
      }
      const float k = static_cast<float>(dot * r * r * r / C);
      for (int c = 0; c < C; ++c) dxr[c] += r * weight[c] * dyr[c] - xr[c] * k;
    }
  }
  detail::add_block_partials(dweight, dw_part.data(), nblocks, C);
}

}  // namespace dytrain::cpu

// DyT forward and backward, fp32 with double accumulators for every reduction.
// Forward is parallel over rows; the site moments are per-row double partials summed in row order afterwards, so
// they do not depend on the thread count. Backward recomputes tanh(alpha * x) instead of saving it (one tanh per
// element is cheap next to the matmuls, and it saves an (N, C) activation per site). dx is written per row; dalpha,
// dgamma and dbeta are reduced through fixed row blocks (row_blocks.h) for determinism.
#include "kernels/cpu/dyt.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/row_blocks.h"

namespace dytrain::cpu {

void dyt_forward(float* y, const float* x, float alpha, const float* gamma, const float* beta, int64_t N, int C,
                 SiteMoments* moments) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x + n * C;
    float* yr = y + n * C;
    for (int c = 0; c < C; ++c) {
      const float b = beta ? beta[c] : 0.0f;
      yr[c] = gamma[c] * std::tanh(alpha * xr[c]) + b;
    }
  }
  if (!moments) return;

  std::vector<double> rows(static_cast<size_t>(N) * 3);  // (N, 3): sum, sum_sq, saturated
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x + n * C;
    double s = 0.0, s2 = 0.0, sat = 0.0;
    for (int c = 0; c < C; ++c) {
      const double v = xr[c];
      s += v;
      s2 += v * v;
      sat += std::fabs(alpha * xr[c]) > 2.0f ? 1.0 : 0.0;
    }
    rows[n * 3 + 0] = s;
    rows[n * 3 + 1] = s2;
    rows[n * 3 + 2] = sat;
  }
  double s = 0.0, s2 = 0.0, sat = 0.0;
  for (int64_t n = 0; n < N; ++n) {
    s += rows[n * 3 + 0];
    s2 += rows[n * 3 + 1];
    sat += rows[n * 3 + 2];
  }
  moments->sum += s;
  moments->sum_sq += s2;
  moments->saturated += sat;
  moments->count += static_cast<double>(N) * C;
}

void dyt_backward(float* dx, float* dalpha, float* dgamma, float* dbeta, const float* dy, const float* x,
                  float alpha, const float* gamma, int64_t N, int C) {
  const int64_t nblocks = detail::row_block_count(N);
  std::vector<double> dgamma_part(static_cast<size_t>(nblocks) * C, 0.0);  // (nblocks, C)
  std::vector<double> dbeta_part(dbeta ? static_cast<size_t>(nblocks) * C : 0, 0.0);
  std::vector<double> dalpha_part(static_cast<size_t>(nblocks), 0.0);

#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    double* dg = dgamma_part.data() + blk * C;
    double* db = dbeta ? dbeta_part.data() + blk * C : nullptr;
    double da = 0.0;
    const int64_t n_end = std::min(N, (blk + 1) * detail::kRowBlock);
    for (int64_t n = blk * detail::kRowBlock; n < n_end; ++n) {
      const float* xr = x + n * C;
      const float* dyr = dy + n * C;
      float* dxr = dx + n * C;
      for (int c = 0; c < C; ++c) {
        const float t = std::tanh(alpha * xr[c]);
        const float dt = dyr[c] * gamma[c] * (1.0f - t * t);  // dL/d(alpha x)
        dxr[c] += dt * alpha;
        da += static_cast<double>(dt) * xr[c];
        dg[c] += static_cast<double>(dyr[c]) * t;
        if (db) db[c] += dyr[c];
      }
    }
    dalpha_part[blk] = da;
  }
  detail::add_block_partials(dgamma, dgamma_part.data(), nblocks, C);
  if (dbeta) detail::add_block_partials(dbeta, dbeta_part.data(), nblocks, C);
  *dalpha += static_cast<float>(detail::sum_in_order(dalpha_part.data(), nblocks));
}

}  // namespace dytrain::cpu

// Dynamic Tanh, the normalization replacement of "Transformers without Normalization" (arXiv 2503.10622):
//   y = gamma * tanh(alpha * x) + beta      alpha a scalar, gamma and beta per channel, beta optional.
// fp32 reference for every backend. Rows are tokens, columns channels.
#pragma once
#include <cstdint>

namespace dytrain::cpu {

// Moments of a norm site's input, gathered in the forward pass at log steps; the metrics layer turns them into
// act_mean, act_std, inv_std and sat. Sums are in double so they can be added across micro-batches and ranks.
struct SiteMoments {
  double sum = 0.0;       // sum of x
  double sum_sq = 0.0;    // sum of x^2
  double saturated = 0.0; // count of elements with |alpha * x| > 2 (tanh saturated); 0 for RMSNorm sites
  double count = 0.0;     // number of elements
};

// y (N, C) = gamma * tanh(alpha * x) + beta; x (N, C); gamma (C); beta (C) or nullptr.
// moments: nullptr, or accumulated (+=) with this call's input statistics.
void dyt_forward(float* y, const float* x, float alpha, const float* gamma, const float* beta, int64_t N, int C,
                 SiteMoments* moments);

// Backward of dyt_forward. Every gradient accumulates (+=): dx (N, C), dalpha (1), dgamma (C), dbeta (C) or nullptr.
void dyt_backward(float* dx, float* dalpha, float* dgamma, float* dbeta, const float* dy, const float* x,
                  float alpha, const float* gamma, int64_t N, int C);

}  // namespace dytrain::cpu

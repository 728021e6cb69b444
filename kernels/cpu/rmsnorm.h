// RMSNorm, the baseline DyT replaces: y = x / sqrt(mean(x^2) + eps) * weight.
#pragma once
#include <cstdint>

#include "kernels/cpu/dyt.h"  // SiteMoments

namespace dytrain::cpu {

// y (N, C); rstd (N) = 1 / sqrt(mean(x^2) + eps), saved for the backward pass; weight (C).
// moments: nullptr, or accumulated (+=) with this call's input statistics (saturated stays 0).
void rmsnorm_forward(float* y, float* rstd, const float* x, const float* weight, float eps, int64_t N, int C,
                     SiteMoments* moments);

// Backward of rmsnorm_forward; dx (N, C) and dweight (C) accumulate (+=).
void rmsnorm_backward(float* dx, float* dweight, const float* dy, const float* x, const float* weight,
                      const float* rstd, int64_t N, int C);

}  // namespace dytrain::cpu

// Squared L2 norm for global gradient clipping. Deterministic: fixed-size chunks summed in double, in order,
// whatever the thread count, so a run is reproducible bit for bit.
#pragma once
#include <cstdint>

namespace dytrain::cpu {

// sum of x[i]^2 over n elements.
double sum_squares(const float* x, int64_t n);

}  // namespace dytrain::cpu

// SwiGLU gate, elementwise. With s = sigmoid(g): h = g s u, dh/dg = u s (1 + g (1 - s)), dh/du = g s.
// The sigmoid is written as 1 / (1 + exp(-g)), which saturates cleanly to 0 or 1 for large |g| in fp32.
#include "kernels/cpu/swiglu.h"

#include <cmath>

namespace dytrain::cpu {

void swiglu_forward(float* h, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float s = 1.0f / (1.0f + std::exp(-g));
    h[i] = g * s * up[i];
  }
}

void swiglu_backward(float* dgate, float* dup, const float* dh, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float s = 1.0f / (1.0f + std::exp(-g));
    dgate[i] += dh[i] * up[i] * s * (1.0f + g * (1.0f - s));
    dup[i] += dh[i] * g * s;
  }
}

}  // namespace dytrain::cpu

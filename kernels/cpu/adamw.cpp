// AdamW, elementwise and parallel over elements (no reductions, so trivially deterministic). The bias corrections
// 1 - beta^t are computed once per call in double (beta2^t for t in the 10^5 range loses digits in fp32) and rounded
// to float; the per-element update is fp32, the precision the moments are stored in.
#include "kernels/cpu/adamw.h"

#include <cmath>

namespace dytrain::cpu {

void adamw_update(float* param, float* m, float* v, const float* grad, int64_t n, const AdamWStep& s) {
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(s.beta1), static_cast<double>(s.t)));
  const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(s.beta2), static_cast<double>(s.t)));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] * s.grad_scale;
    const float mi = s.beta1 * m[i] + (1.0f - s.beta1) * g;
    const float vi = s.beta2 * v[i] + (1.0f - s.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float update = mi / bc1 / (std::sqrt(vi / bc2) + s.eps);
    param[i] -= s.lr * (update + s.weight_decay * param[i]);
  }
}

}  // namespace dytrain::cpu

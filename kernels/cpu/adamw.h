// AdamW (Loshchilov & Hutter) with decoupled weight decay, the update of every parameter group:
//   g = grad * grad_scale;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr * (m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + weight_decay * p)
#pragma once
#include <cstdint>

namespace dytrain::cpu {

struct AdamWStep {
  float lr = 0.0f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  float grad_scale = 1.0f;  // the clipping factor, applied to the gradient before the moments
  int64_t t = 1;            // 1-based step count for bias correction
};

// param, m, v (n) updated in place from grad (n).
void adamw_update(float* param, float* m, float* v, const float* grad, int64_t n, const AdamWStep& s);

}  // namespace dytrain::cpu

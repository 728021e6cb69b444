// The per-row math of the cross-entropy kernels (cross_entropy.cu) as __host__ __device__ functions on fp32 values:
// the kernels call them, and a CPU test (tests/kernels/cuda/cross_entropy_math_test.cpp) runs them against double
// precision on machines without a GPU. No bf16 and no CUDA header here, so a plain host compiler takes this file.
#pragma once
#include <math.h>

#include "kernels/cuda/host_device.h"

namespace dytrain::cuda::ce_math {

constexpr int kVec = 8;  // bf16 logits per 16-byte access

// A running log-sum-exp over some elements: their max, and the sum of exp(x - max).
struct MaxSum {
  float max;  // -inf for no elements
  float sum;  // 0 for no elements
};

// A side whose max is the merged max keeps its sum as is; the test on equality (rather than exp(0)) also covers two
// empty sides, where exp(-inf - -inf) would be NaN. An empty side against a non-empty one scales by exp(-inf) = 0.
DYTRAIN_HOST_DEVICE MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.max, b.max);
  const float fa = a.max == m ? 1.0f : expf(a.max - m);
  const float fb = b.max == m ? 1.0f : expf(b.max - m);
  return {m, a.sum * fa + b.sum * fb};
}

// The pair of one vector of kVec logits: its own max and the sum of its kVec exponentials. A vector of -inf only
// (columns masked out, such as a vocabulary padded to a multiple of 64 with -inf logits) holds no mass: it is the
// empty pair {-inf, 0}, where exp(x - max) = exp(-inf - -inf) would be NaN and poison the whole row.
DYTRAIN_HOST_DEVICE MaxSum vector_max_sum(const float* x) {
  float vmax = -INFINITY;
  for (int e = 0; e < kVec; ++e) vmax = fmaxf(vmax, x[e]);
  if (vmax == -INFINITY) return {-INFINITY, 0.0f};
  float vsum = 0.0f;
  for (int e = 0; e < kVec; ++e) vsum += expf(x[e] - vmax);
  return {vmax, vsum};
}

// softmax(x) of one logit from the row's log-sum-exp.
DYTRAIN_HOST_DEVICE float probability(float x, float lse) { return expf(x - lse); }

// The gradient at the target, dloss * (p_target - 1). Computed as p_target - 1 it cancels: for a confident prediction
// (1 - p ~ 1e-4) the fp32 lse's own rounding (half an ulp of lse, 5e-7 at lse ~ 10) is already 0.5% of 1 - p, and
// expf's 2 ulp add more. Two forms that keep the accuracy:
// - whole rows: 1 - p_target = the sum of the other columns' probabilities, `rest`, a sum of positive terms each as
//   accurate as any probability (relative error ~ that of lse, not divided by 1 - p);
// - a vocabulary-parallel part, which does not see the other columns: dloss * expm1(x - lse), exact but for the
//   rounding of x - lse, which still carries lse's error (a relative error of ulp(lse) / (1 - p)).
DYTRAIN_HOST_DEVICE float target_grad_from_rest(float rest, float dloss) { return -dloss * rest; }
DYTRAIN_HOST_DEVICE float target_grad_expm1(float x_target, float lse, float dloss) {
  return dloss * expm1f(x_target - lse);
}

}  // namespace dytrain::cuda::ce_math

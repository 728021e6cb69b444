// Softmax cross-entropy over the vocabulary, one row per token, parallel over rows. Each row subtracts its max and
// sums the exponentials in double, so log-sum-exp stays accurate for V in the 10^5 range; the exponentials themselves
// are fp32 expf (within 1 ulp, and several times cheaper than double exp at N * V calls per step). Backward makes one
// exp per element: it stores exp(x - max) in dlogits, then scales the row by dloss / sum. Each element is read before
// it is written, which is what lets dlogits alias logits (the LM head's logits buffer is reused for its gradient,
// saving an (N, V) allocation). At the target, dloss * (p - 1) is taken as -dloss * (the other columns' sum) / sum, in
// double: p - 1 in fp32 would cancel for a confident prediction (1 - p ~ 1e-5 leaves fp32's rounding of p, 6e-8, at
// 0.6% of the result), while the double sum minus the target's term keeps 1 - p to double precision.
// Masked logits (-inf) have probability and gradient 0 as long as the row has a finite logit; a row without one has
// no distribution (NaN).
#include "kernels/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace dytrain::cpu {

namespace {

void check_targets(const int32_t* targets, int64_t N, int V, const char* fn) {
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] < 0 || targets[n] >= V) {
      throw std::invalid_argument(std::string("kernels/cpu/cross_entropy.cpp ") + fn + ": target " +
                                  std::to_string(targets[n]) + " at row " + std::to_string(n) +
                                  " is outside the vocabulary [0, " + std::to_string(V) +
                                  "); check that the data shards were tokenized with this model's vocab_size");
    }
  }
}

}  // namespace

void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t N, int V) {
  check_targets(targets, N, V, "cross_entropy_forward");
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* x = logits + n * V;
    float mx = -INFINITY;
    for (int i = 0; i < V; ++i) mx = std::max(mx, x[i]);
    double sum = 0.0;
    for (int i = 0; i < V; ++i) sum += std::exp(x[i] - mx);
    const double lse = mx + std::log(sum);
    losses[n] = static_cast<float>(lse - x[targets[n]]);
  }
}

void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets, float dloss, int64_t N,
                            int V) {
  check_targets(targets, N, V, "cross_entropy_backward");
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* x = logits + n * V;
    float* dx = dlogits + n * V;
    float mx = -INFINITY;
    for (int i = 0; i < V; ++i) mx = std::max(mx, x[i]);
    // Element i of x is read before element i of dx is written, so dx may be x.
    double sum = 0.0;
    for (int i = 0; i < V; ++i) {
      const float e = std::exp(x[i] - mx);
      dx[i] = e;
      sum += e;
    }
    const double rest = sum - dx[targets[n]];  // the other columns' share of the sum, before dx is scaled
    const float inv_sum = static_cast<float>(1.0 / sum);
    for (int i = 0; i < V; ++i) dx[i] = dloss * dx[i] * inv_sum;
    dx[targets[n]] = static_cast<float>(-double(dloss) * (rest / sum));
  }
}

}  // namespace dytrain::cpu

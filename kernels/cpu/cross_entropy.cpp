// Softmax cross-entropy over the vocabulary, one row per token, parallel over rows. Each row subtracts its max and
// sums the exponentials in double, so log-sum-exp stays accurate for V in the 10^5 range; the exponentials themselves
// are fp32 expf (within 1 ulp, and several times cheaper than double exp at N * V calls per step). Backward
// recomputes the row's max and sum before writing any of it, which is what lets dlogits alias logits (the LM head's
// logits buffer is reused for its gradient, saving an (N, V) allocation).
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

struct RowStats {
  float max;
  double sum;  // sum of exp(logit - max)
};

RowStats row_stats(const float* x, int V) {
  float mx = -INFINITY;
  for (int i = 0; i < V; ++i) mx = std::max(mx, x[i]);
  double sum = 0.0;
  for (int i = 0; i < V; ++i) sum += std::exp(x[i] - mx);
  return {mx, sum};
}

}  // namespace

void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t N, int V) {
  check_targets(targets, N, V, "cross_entropy_forward");
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* x = logits + n * V;
    const RowStats st = row_stats(x, V);
    const double lse = st.max + std::log(st.sum);
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
    const RowStats st = row_stats(x, V);
    const float inv_sum = static_cast<float>(1.0 / st.sum);
    const int32_t target = targets[n];
    for (int i = 0; i < V; ++i) {
      const float p = std::exp(x[i] - st.max) * inv_sum;
      dx[i] = dloss * (p - (i == target ? 1.0f : 0.0f));
    }
  }
}

}  // namespace dytrain::cpu

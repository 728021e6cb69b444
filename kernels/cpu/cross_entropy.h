// Softmax cross-entropy of next-token logits. Computed with the max subtracted (log-sum-exp in double).
#pragma once
#include <cstdint>

namespace dytrain::cpu {

// losses (N) = logsumexp(logits[n]) - logits[n, targets[n]]; logits (N, V); targets (N), each in [0, V).
void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t N, int V);

// dlogits (N, V) = dloss * (softmax(logits[n]) - onehot(targets[n])). Overwrites dlogits; dlogits may alias
// logits (the row is read before it is written). dloss is the weight of each row's loss in the objective,
// e.g. 1 / (N * grad_accum) for a mean.
void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets, float dloss, int64_t N, int V);

}  // namespace dytrain::cpu

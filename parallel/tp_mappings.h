// Megatron-LM's tensor-parallel communication steps, each forward written next to its backward twin:
//
//   copy_to_tp_region      forward: identity             backward: all-reduce (sum) of the input gradient
//   reduce_from_tp_region  forward: all-reduce (sum)     backward: identity
//
// A column-parallel linear (q, k, v, gate, up, LM head) reads a replicated input: its input gradient is a partial sum
// on every rank, completed by copy_to_tp_region's backward. A row-parallel linear (o, down) produces partial outputs,
// completed by reduce_from_tp_region's forward. The identities are written out so every call site names both halves.
//
// The vocabulary-parallel embedding and cross-entropy (rank r holds vocabulary rows [r V/tp, (r + 1) V/tp)) follow.
#pragma once
#include <cstdint>

#include "parallel/comm.h"

namespace dytrain {

inline void copy_to_tp_region_forward(Communicator&, float*, int64_t) {}
inline void copy_to_tp_region_backward(Communicator& tp, float* dx, int64_t n) { tp.all_reduce(dx, n, ReduceOp::sum); }

inline void reduce_from_tp_region_forward(Communicator& tp, float* y, int64_t n) { tp.all_reduce(y, n, ReduceOp::sum); }
inline void reduce_from_tp_region_backward(Communicator&, float*, int64_t) {}

// out (N, C) = scale * table[tokens[n] - vocab_begin] for tokens in this rank's rows [vocab_begin, vocab_begin +
// rows), 0 elsewhere, then summed over the tp group (reduce_from_tp_region): every rank ends with the full embedding.
void vocab_parallel_embedding_forward(Communicator& tp, float* out, const int32_t* tokens, const float* table,
                                      float scale, int64_t vocab_begin, int64_t rows, int64_t N, int C);

// Backward: dtable (rows, C) += scale * dout for this rank's tokens; *dscale += sum(dout * table[token]) over ALL
// tokens (summed over the tp group, so the replicated scalar's gradient is identical on every rank); dscale may be
// nullptr.
void vocab_parallel_embedding_backward(Communicator& tp, float* dtable, float* dscale,
                                       const float* dout, const int32_t* tokens, const float* table, float scale,
                                       int64_t vocab_begin, int64_t rows, int64_t N, int C);

// Cross-entropy of logits split by vocabulary: logits (N, cols) are columns [vocab_begin, vocab_begin + cols) of
// the full (N, V). losses (N) = logsumexp over all V - logit[target], identical on every rank. row_max and
// row_sum (N) are saved for the backward pass.
void vocab_parallel_cross_entropy_forward(Communicator& tp, float* losses, float* row_max, float* row_sum,
                                          const float* logits, const int32_t* targets, int64_t vocab_begin,
                                          int64_t cols, int64_t N);

// dlogits (N, cols) = dloss * (softmax - onehot) on this rank's columns; overwrites, may alias logits.
void vocab_parallel_cross_entropy_backward(float* dlogits, const float* logits, const float* row_max,
                                           const float* row_sum, const int32_t* targets, float dloss,
                                           int64_t vocab_begin, int64_t cols, int64_t N);

}  // namespace dytrain

// Softmax cross-entropy of bf16 next-token logits on the GPU, fused so that the softmax is never stored: the forward
// reads each row once (online max and sum of exponentials) and saves one float per row, its log-sum-exp; the backward
// recomputes each probability from that lse and writes the gradient over the logits, in place if asked. The CPU op
// (kernels/cpu/cross_entropy.h) is the reference these are tested against.
//
// All pointers are device pointers. Math is fp32; logits and dlogits are bf16. Rows are independent (one thread block
// per row, no reduction across rows), so results are bit-identical from run to run whatever the grid. Work is queued
// on `stream`; nothing synchronizes the host. Bad arguments throw std::invalid_argument before anything is queued;
// CUDA failures throw std::runtime_error with a hint (check.h). targets are not checked on the device: each must be
// in [0, V) (the data loader checks token ids).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dytrain::cuda {

// losses (N) = lse[n] - logits[n, targets[n]]; lse (N) = logsumexp(logits[n]), saved for the backward.
// logits (N, V), any V >= 1 (ragged V such as 50257 included); targets (N).
void cross_entropy_forward(float* losses, float* lse, const __nv_bfloat16* logits, const int32_t* targets, int64_t N,
                           int V, cudaStream_t stream);

// dlogits (N, V) = dloss * (softmax(logits[n]) - onehot(targets[n])), written (=), softmax taken from the saved lse
// (N). dloss is the weight of each row's loss in the objective, e.g. 1 / (N * grad_accum) for a mean. dlogits may be
// logits itself (the model overwrites its logits with their gradient); otherwise the two must sit at the same offset
// from a 16-byte boundary (any two cudaMalloc'd buffers do), since rows are accessed 16 bytes at a time.
// Vocabulary-parallel: logits are the columns [vocab_begin, vocab_begin + V) of the full rows, lse the combined one;
// a target outside the columns has no onehot term here. vocab_size: the full rows' length, 0 if unknown. Only when
// the columns are known to be the whole rows (vocab_begin 0, vocab_size V) does the target's gradient come from the
// sum of the other probabilities, accurate for confident predictions; otherwise from expm1(x - lse), whose relative
// error grows as ulp(lse) / (1 - p) (cross_entropy_math.h).
void cross_entropy_backward(__nv_bfloat16* dlogits, const __nv_bfloat16* logits, const float* lse,
                            const int32_t* targets, float dloss, int64_t N, int V, cudaStream_t stream,
                            int64_t vocab_begin = 0, int64_t vocab_size = 0);

// The vocabulary-parallel forward (Megatron-LM's), in two steps around the tensor-parallel collectives:
// 1. each rank, on its columns [vocab_begin, vocab_begin + V) of the full rows: lse_part (N) = logsumexp over them,
//    target_logit (N) = logits[n, targets[n] - vocab_begin] when the target is among them, else 0;
// 2. with lse_parts (P, N) gathered from the P ranks in rank order and target_logit summed over them (one rank's
//    value): lse (N) = logsumexp of the parts, losses (N) = lse - target_logit. The same bits on every rank.
void cross_entropy_partial_forward(float* lse_part, float* target_logit, const __nv_bfloat16* logits,
                                   const int32_t* targets, int64_t vocab_begin, int64_t N, int V,
                                   cudaStream_t stream);
void cross_entropy_combine(float* losses, float* lse, const float* lse_parts, const float* target_logit, int64_t N,
                           int P, cudaStream_t stream);

}  // namespace dytrain::cuda

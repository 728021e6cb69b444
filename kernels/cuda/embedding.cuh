// Token embedding times the learnable scalar embed_scale on the GPU: out = scale * table[token], bf16 table (the bf16
// copy of the fp32 weights) and output, fp32 math and fp32 gradients. The CPU op (kernels/cpu/embedding.h) is the
// reference these are tested against.
//
// Tensor parallelism splits the table by vocabulary: a rank holds rows [vocab_begin, vocab_begin + vocab_rows) and
// gives zero rows for the other tokens (the TP all-reduce then sums the ranks' outputs); without TP that is the
// whole vocabulary, vocab_begin = 0.
//
// Deterministic backward without atomics: the host groups the positions of a batch by token (it holds the tokens
// anyway, and the grouping is a counting sort), so each token's gradient row is one fixed-order sum computed by the
// threads that own it. dtable and dscale accumulate (+=) across calls, like the CPU op's.
//
// All pointers are device pointers unless stated. Work is queued on `stream`; nothing synchronizes the host. Bad
// arguments throw std::invalid_argument before anything is queued; CUDA failures throw std::runtime_error with a hint
// (check.h).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dytrain::cuda {

// Host side: upload positions, rows and begins for embedding_backward.
struct TokenBuckets {
  std::vector<int32_t> positions;  // (P) positions n whose token is in this rank's rows, grouped by token, ascending n
                                   // within a group
  std::vector<int32_t> rows;       // (U) the table row (token - vocab_begin) of each group, ascending
  std::vector<int32_t> begins;     // (U + 1) group u is positions[begins[u], begins[u+1])
};

// tokens (N) host. Only tokens in [vocab_begin, vocab_begin + vocab_rows) are kept. Throws std::invalid_argument naming
// the position of the first token outside [0, vocab_total), leaving *out untouched. Counting sort, O(N + vocab_rows).
void bucket_tokens(TokenBuckets* out, const int32_t* tokens, int64_t N, int64_t vocab_begin, int64_t vocab_rows,
                   int64_t vocab_total);

// out (N, C) = scale * table[tokens[n] - vocab_begin] for tokens in this rank's rows, 0 for the others.
// tokens (N); table (vocab_rows, C) bf16; scale (1) fp32.
void embedding_forward(__nv_bfloat16* out, const int32_t* tokens, const __nv_bfloat16* table, const float* scale,
                       int64_t N, int C, int64_t vocab_begin, int64_t vocab_rows, cudaStream_t stream);

// Bytes of the device workspace embedding_backward needs for dscale on the current device (one fp64 partial per
// resident block), to be 16-byte aligned; 0 when N == 0.
size_t embedding_backward_workspace_bytes(int64_t N, int C);

// dtable (vocab_rows, C) fp32 += scale * (sum of the dout rows of each group), rows not in any group untouched;
// dscale (1) += sum over kept positions of dot(dout[n], table[row]), or nullptr to skip (then table and the
// workspace are not read). dout (N, C) bf16; table (vocab_rows, C) bf16; scale (1) fp32. positions (P), rows (U),
// begins (U + 1): the device copies of a TokenBuckets made by bucket_tokens from this batch's N tokens, with
// n_groups = U = rows.size() (their values are trusted: they are not checked on the device). workspace: at least
// embedding_backward_workspace_bytes(N, C) bytes when dscale is set.
void embedding_backward(float* dtable, float* dscale, const __nv_bfloat16* dout, const __nv_bfloat16* table,
                        const float* scale, const int32_t* positions, const int32_t* rows, const int32_t* begins,
                        int n_groups, int64_t N, int C, void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace dytrain::cuda

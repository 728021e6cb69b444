// Causal grouped-query attention on the GPU: bf16 q, k, v in, bf16 out, fp32 math and an fp32 log-sum-exp per query
// row saved for the backward, which recomputes the probabilities from q, k and lse. Query head h reads key/value head
// h / (Hq / Hkv); scores are scaled by 1/sqrt(D). The CPU op (kernels/cpu/attention.h) is the reference.
//
// q, k and v are column slices of the fused qkv GEMM's output: token rows ld_qkv elements apart, q at column 0, k at
// Hq*D, v at (Hq+Hkv)*D of the same rows; they are passed as three pointers, so any three buffers with a common row
// stride do. dq, dk and dv use the same stride (slices of one d_qkv buffer) and are written (=), never accumulated.
//
// This path materializes the scores of a chunk of query tokens through batched cuBLASLt GEMMs (attention.cu explains
// the design); flash_attention.cuh computes the same op tile by tile without them, and this one stays its reference.
// All pointers are device pointers; all work is queued on blas.stream() and nothing synchronizes the host. Bad
// arguments throw std::invalid_argument before anything is queued (check_attention_args); CUDA failures throw
// std::runtime_error.
//
// Requirements: B, T, Hq, Hkv >= 1, Hkv divides Hq, B * Hq * T < 2^31 query rows, D a multiple of 8 (the kernels move
// 16 bytes at a time), ld_qkv >= Hq * D and a multiple of 8, the bf16 tensors 16-byte aligned, lse 4-byte aligned,
// and a caller-owned workspace (16-byte aligned) of attention_workspace_bytes(B, T, Hq, Hkv, D), shared by forward
// and backward: for T >= 128 about B*Hq*T*(6*D + 1540) + 12*B*Hkv*T*D bytes, linear in T because scores are held
// for 128 query tokens at a time.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "kernels/cuda/matmul.cuh"  // Blas

namespace dytrain::cuda {

// Workspace bytes of attention_forward and attention_backward for this shape; a pure function of the shape (no CUDA
// call). Throws std::invalid_argument for a shape the op does not support.
size_t attention_workspace_bytes(int B, int T, int Hq, int Hkv, int D);

// out (B, T, Hq, D) dense (row stride Hq*D) = softmax(q k^T / sqrt(D) + causal mask) v;
// lse (B, Hq, T) fp32: each row's log-sum-exp of the scaled, masked scores.
// q (B, T, Hq, D), k and v (B, T, Hkv, D): token rows ld_qkv elements apart.
void attention_forward(Blas& blas, __nv_bfloat16* out, float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                       const __nv_bfloat16* v, int64_t ld_qkv, int B, int T, int Hq, int Hkv, int D, void* workspace,
                       size_t workspace_bytes);

// Backward of attention_forward. dq (B, T, Hq, D), dk and dv (B, T, Hkv, D), token rows ld_qkv apart, written (=).
// dout (B, T, Hq, D) dense; out (B, T, Hq, D) dense and lse (B, Hq, T) from the forward; q, k, v as in the forward.
void attention_backward(Blas& blas, __nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv, const __nv_bfloat16* dout,
                        const __nv_bfloat16* out, const float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                        const __nv_bfloat16* v, int64_t ld_qkv, int B, int T, int Hq, int Hkv, int D, void* workspace,
                        size_t workspace_bytes);

// A tensor argument as check_attention_args sees it: its name in messages, its address (compared, never read) and
// the alignment in bytes (a power of two) the kernels need.
struct NamedPointer {
  const char* name;
  const void* ptr;
  size_t alignment_bytes;
};

// The checks of check_attention_args but the workspace's, shared with the flash kernels (flash_attention.cuh):
// throws std::invalid_argument naming dytrain::cuda::<op> for a bad shape or ld_qkv, or a null or misaligned tensor.
void check_attention_tensors(const char* op, int B, int T, int Hq, int Hkv, int D, int64_t ld_qkv,
                             std::initializer_list<NamedPointer> tensors);

// The argument checks the entry points run first, callable on their own and on a machine without a GPU (no CUDA
// call, no pointer read): throws std::invalid_argument naming dytrain::cuda::<op> and the bad argument when the shape
// or ld_qkv breaks the requirements above, a tensor is null or misaligned, or the workspace is null, misaligned or
// smaller than attention_workspace_bytes.
void check_attention_args(const char* op, int B, int T, int Hq, int Hkv, int D, int64_t ld_qkv,
                          std::initializer_list<NamedPointer> tensors, const void* workspace, size_t workspace_bytes);

}  // namespace dytrain::cuda

// Causal grouped-query flash attention on the GPU: the same op, layouts and outputs as attention.cuh (bf16 q, k, v
// as column slices of the qkv rows ld_qkv apart, bf16 out (B, T, Hq, D) dense, fp32 lse (B, Hq, T), dq, dk, dv written
// (=) with the qkv row stride), computed tile by tile with tensor-core MMAs and an online softmax, so no score matrix
// is ever in memory: the forward keeps a 64 x 64 score tile per CTA in shared memory, the backward recomputes it from
// q, k and the saved lse. flash_attention.cu explains the kernels; attention.cuh's materialized path stays the
// reference and the fallback, and the model picks one of them by model.attention (trainer/config/config.h).
//
// Requirements: those of attention.cuh (check_attention_tensors), and D = 64 or 128 (the kernels are instantiated for
// these head dims). The backward takes a caller-owned workspace (16-byte aligned) of
// flash_attention_workspace_bytes(B, T, Hq): the fp32 rowsum(dout * out) per query row, 4 B*Hq*T bytes. All pointers
// are device pointers; the work is queued on `stream` and nothing synchronizes the host. Bad arguments throw
// std::invalid_argument before anything is queued; CUDA failures throw std::runtime_error.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace dytrain::cuda {

// Whether the flash kernels are built for head dim D.
bool flash_attention_supports(int D);

// Workspace bytes of flash_attention_backward; a pure function of the shape (no CUDA call).
size_t flash_attention_workspace_bytes(int B, int T, int Hq);

// out (B, T, Hq, D) dense = softmax(q k^T / sqrt(D) + causal mask) v; lse (B, Hq, T) fp32.
// q (B, T, Hq, D), k and v (B, T, Hkv, D): token rows ld_qkv elements apart.
void flash_attention_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                             const __nv_bfloat16* v, int64_t ld_qkv, int B, int T, int Hq, int Hkv, int D,
                             cudaStream_t stream);

// Backward of flash_attention_forward (or of attention_forward: out and lse mean the same). dq (B, T, Hq, D), dk and
// dv (B, T, Hkv, D), token rows ld_qkv apart, written (=). dout (B, T, Hq, D) dense. Deterministic: no atomics, every
// sum in a fixed order.
void flash_attention_backward(__nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv, const __nv_bfloat16* dout,
                              const __nv_bfloat16* out, const float* lse, const __nv_bfloat16* q,
                              const __nv_bfloat16* k, const __nv_bfloat16* v, int64_t ld_qkv, int B, int T, int Hq,
                              int Hkv, int D, void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace dytrain::cuda

// Dynamic Tanh on the GPU: y = gamma * tanh(alpha * x) + beta over (N, C) bf16 activations, with fp32 math and fp32
// parameters (alpha a scalar, gamma and beta per channel, beta optional), as in ARCHITECTURE.md's numerics. The CPU op
// (kernels/cpu/dyt.h) is the reference these are tested against.
//
// The residual stream is bf16, read and written in place: the fused forward reads the residual and the branch output,
// writes the new residual and y, 8 bytes per element; an fp32 residual would move 12 and its gradient another 4 per
// element and layer, for a precision the bf16 GEMM inputs downstream do not keep anyway (llm.c makes the same choice).
// The new residual is rounded to bf16 before DyT reads it, so the forward, the backward and the moments all see the
// same x.
//
// All pointers are device pointers; alpha, gamma, beta and the parameter gradients are fp32, alpha and dalpha hold
// one element. Parameter gradients accumulate (+=) across calls like the CPU op's; dx is written (=) by
// dyt_backward and added into the residual gradient by dyt_residual_backward. Work is queued on `stream`; nothing
// synchronizes the host. Bad arguments throw std::invalid_argument before anything is queued; CUDA failures throw
// std::runtime_error with a hint (check.h).
//
// Workspaces. The moments and the parameter gradients are reduced in two deterministic stages through a caller-owned
// device workspace (16-byte aligned) of at least the *_workspace_bytes(N, C) of the current device. The forward needs
// one only when moments are requested.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/dyt.h"  // SiteMoments

namespace dytrain::cuda {

size_t dyt_forward_workspace_bytes(int64_t N, int C);
size_t dyt_backward_workspace_bytes(int64_t N, int C);

// y (N, C) = gamma * tanh(alpha * x) + beta; x (N, C); gamma (C); beta (C) or nullptr.
// moments: nullptr, or a device cpu::SiteMoments accumulated (+=) with x's sum, sum of squares, count of
// |alpha x| > 2 and element count, in the same pass over x.
void dyt_forward(__nv_bfloat16* y, const __nv_bfloat16* x, const float* alpha, const float* gamma, const float* beta,
                 int64_t N, int C, cpu::SiteMoments* moments, void* workspace, size_t workspace_bytes,
                 cudaStream_t stream);

// residual (N, C) in place: residual = bf16(residual + branch); then y = DyT(residual) as in dyt_forward, the
// moments being those of the new residual. branch (N, C) is the output of the block that feeds the residual.
void dyt_residual_forward(__nv_bfloat16* y, __nv_bfloat16* residual, const __nv_bfloat16* branch, const float* alpha,
                          const float* gamma, const float* beta, int64_t N, int C, cpu::SiteMoments* moments,
                          void* workspace, size_t workspace_bytes, cudaStream_t stream);

// Backward of dyt_forward: dx (N, C) = dL/dx (written); dalpha (1), dgamma (C), dbeta (C) or nullptr accumulate.
// dy (N, C) = dL/dy; x (N, C) is the forward input (tanh is recomputed, nothing else is saved).
void dyt_backward(__nv_bfloat16* dx, float* dalpha, float* dgamma, float* dbeta, const __nv_bfloat16* dy,
                  const __nv_bfloat16* x, const float* alpha, const float* gamma, int64_t N, int C, void* workspace,
                  size_t workspace_bytes, cudaStream_t stream);

// Backward twin of dyt_residual_forward: dresidual (N, C) += dL/dx, x being the new residual. The residual add's own
// backward is the identity (the branch's gradient is dresidual itself), so this is all it needs.
void dyt_residual_backward(__nv_bfloat16* dresidual, float* dalpha, float* dgamma, float* dbeta,
                           const __nv_bfloat16* dy, const __nv_bfloat16* x, const float* alpha, const float* gamma,
                           int64_t N, int C, void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace dytrain::cuda

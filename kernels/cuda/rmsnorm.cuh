// RMSNorm on the GPU, the baseline DyT replaces: y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps), over (N, C)
// bf16 activations with fp32 math, an fp32 weight and an fp32 rstd (N) saved for the backward pass. The CPU op
// (kernels/cpu/rmsnorm.h) is the reference. Same conventions as dyt.cuh: device pointers, a bf16 residual stream
// updated in place by the fused forward, dweight accumulated (+=), dx written (=) or added into the residual gradient,
// deterministic two-stage reductions through a caller-owned workspace, std::invalid_argument for bad arguments.
// The moments are those of dyt.cuh with saturated left at 0 (RMSNorm has no alpha).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/dyt.h"  // SiteMoments

namespace dytrain::cuda {

size_t rmsnorm_forward_workspace_bytes(int64_t N, int C);
size_t rmsnorm_backward_workspace_bytes(int64_t N, int C);

// y (N, C) = x * rstd * weight; rstd (N) written; x (N, C); weight (C).
// moments: nullptr, or a device cpu::SiteMoments accumulated (+=) with x's statistics.
void rmsnorm_forward(__nv_bfloat16* y, float* rstd, const __nv_bfloat16* x, const float* weight, float eps, int64_t N,
                     int C, cpu::SiteMoments* moments, void* workspace, size_t workspace_bytes, cudaStream_t stream);

// residual (N, C) in place: residual = bf16(residual + branch); then rmsnorm_forward of the new residual.
void rmsnorm_residual_forward(__nv_bfloat16* y, float* rstd, __nv_bfloat16* residual, const __nv_bfloat16* branch,
                              const float* weight, float eps, int64_t N, int C, cpu::SiteMoments* moments,
                              void* workspace, size_t workspace_bytes, cudaStream_t stream);

// Backward of rmsnorm_forward: dx (N, C) = dL/dx (written); dweight (C) accumulates. rstd (N) from the forward.
void rmsnorm_backward(__nv_bfloat16* dx, float* dweight, const __nv_bfloat16* dy, const __nv_bfloat16* x,
                      const float* weight, const float* rstd, int64_t N, int C, void* workspace, size_t workspace_bytes,
                      cudaStream_t stream);

// Backward twin of rmsnorm_residual_forward: dresidual (N, C) += dL/dx, x being the new residual.
void rmsnorm_residual_backward(__nv_bfloat16* dresidual, float* dweight, const __nv_bfloat16* dy,
                               const __nv_bfloat16* x, const float* weight, const float* rstd, int64_t N, int C,
                               void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace dytrain::cuda

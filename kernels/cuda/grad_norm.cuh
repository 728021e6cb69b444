// Squared L2 norm of the gradients on the GPU, for global gradient clipping (the CPU op is kernels/cpu/grad_norm.h).
// Squares are accumulated in fp64, and the reduction is deterministic across GPU models, not only from run to run:
// the grid is a fixed function of n (never of the SM count or occupancy), each block writes one partial to a
// caller-owned workspace, and a second one-block kernel adds the partials in a fixed order. The clip factor, and with
// it the whole loss trajectory, is therefore the same bits on an H100 and on any other GPU.
//
// All pointers are device pointers. Work is queued on `stream`; nothing synchronizes the host. Bad arguments throw
// std::invalid_argument before anything is queued; CUDA failures throw std::runtime_error with a hint (check.h).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace dytrain::cuda {

// Device workspace sum_squares needs for n elements (16-byte aligned); 0 for n == 0. A function of n alone (no device
// query), at most 8 KB.
size_t sum_squares_workspace_bytes(int64_t n);

// *out (one double) = sum of x[i]^2 over x (n) fp32, overwritten (0 for n == 0).
void sum_squares(double* out, const float* x, int64_t n, void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace dytrain::cuda

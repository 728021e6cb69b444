// Sum of squares kernels (grad_norm.cuh): kernel -> launcher -> entry point.
//
// Stage 1: G = min(1024, ceil(n / 1024)) blocks of 256 threads, G fixed by n. Thread k of the grid owns elements
// k, k + stride, k + 2 stride, ... (stride = 256 G), so every warp load is 128 coalesced bytes and x needs no
// alignment (a ZeRO-1 range starts at any element); four loads are issued before their squares are added, to keep
// enough bytes in flight. Each square is exact in fp64 (24-bit significands square into 48 bits), so the only roundings
// are those of the fp64 adds. Each block sums its threads with block_sum (xor butterflies, warps in index order) and
// writes one partial. 1024 blocks fill an H100 (132 SMs x 8 blocks of 256 threads) in one wave; a smaller GPU runs
// them in more waves, with the same result.
// Stage 2: one block of 256 threads sums the G partials in the same fixed pattern and writes *out.
#include "kernels/cuda/grad_norm.cuh"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/norm_rows.cuh"

namespace dytrain::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;
constexpr int64_t kMaxBlocks = 1024;

int blocks_for(int64_t n) { return static_cast<int>(std::min(kMaxBlocks, detail::ceil_div(n, kThreads * kUnroll))); }

// partials (gridDim.x); x (n).
__global__ void __launch_bounds__(kThreads)
    sum_squares_partials_kernel(double* __restrict__ partials, const float* __restrict__ x, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  double acc[1] = {0.0};
  for (; i + (kUnroll - 1) * stride < n; i += kUnroll * stride) {
    float xs[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) xs[u] = x[i + u * stride];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) acc[0] += static_cast<double>(xs[u]) * xs[u];
  }
  for (; i < n; i += stride) acc[0] += static_cast<double>(x[i]) * x[i];
  detail::block_sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc[0];
}

// *out = sum of partials (G).
__global__ void __launch_bounds__(kThreads)
    sum_partials_kernel(double* __restrict__ out, const double* __restrict__ partials, int G) {
  double acc[1] = {0.0};
  for (int b = threadIdx.x; b < G; b += kThreads) acc[0] += partials[b];
  detail::block_sum(acc);
  if (threadIdx.x == 0) *out = acc[0];
}

void launch_sum_squares(double* out, const float* x, int64_t n, double* partials, cudaStream_t stream) {
  const int G = blocks_for(n);
  sum_squares_partials_kernel<<<G, kThreads, 0, stream>>>(partials, x, n);
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
  sum_partials_kernel<<<1, kThreads, 0, stream>>>(out, partials, G);
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
}

void check_count(const char* op, int64_t n) {
  if (n < 0) {
    throw std::invalid_argument(detail::op_name(op) + ": n = " + std::to_string(n) + " elements; need n >= 0");
  }
}

}  // namespace

size_t sum_squares_workspace_bytes(int64_t n) {
  check_count("sum_squares_workspace_bytes", n);
  return static_cast<size_t>(blocks_for(n)) * sizeof(double);
}

void sum_squares(double* out, const float* x, int64_t n, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  const char* op = "sum_squares";
  check_count(op, n);
  detail::check_not_null(op, "out", out);
  if (n == 0) {
    DYTRAIN_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(double), stream));  // all-zero bits are +0.0
    return;
  }
  detail::check_not_null(op, "x", x);
  const size_t needed_bytes = sum_squares_workspace_bytes(n);
  if (workspace == nullptr || workspace_bytes < needed_bytes || reinterpret_cast<uintptr_t>(workspace) % 16 != 0) {
    throw std::invalid_argument(detail::op_name(op) + ": the workspace must be 16-byte aligned and hold " +
                                std::to_string(needed_bytes) + " bytes (got " + std::to_string(workspace_bytes) +
                                "); size it with dytrain::cuda::sum_squares_workspace_bytes(n)");
  }
  launch_sum_squares(out, x, n, static_cast<double*>(workspace), stream);
}

}  // namespace dytrain::cuda

// The fixed-order second-stage reductions of norm_reduce.cuh. Column sums: a block of 32 x 32 threads owns 32
// channels; thread (x, y) sums blocks y, y + 32, ... of its channel (a warp reads 32 consecutive floats of one partial
// row), then the 32 slices are added in a fixed tree. Thousands of partial rows are thus read by many SMs at once
// instead of one dependent chain per channel. The scalar and moment sums are one block each.
#include "kernels/cuda/norm_reduce.cuh"

#include "kernels/cuda/check.h"
#include "kernels/cuda/norm_rows.cuh"

namespace dytrain::cuda::detail {
namespace {

constexpr int kTile = 32;

__global__ void __launch_bounds__(256)
    moments_kernel(cpu::SiteMoments* moments, const double* partials, int G, double count) {
  double a[3] = {0.0, 0.0, 0.0};
  for (int b = threadIdx.x; b < G; b += blockDim.x) {
    a[0] += partials[3 * b + 0];
    a[1] += partials[3 * b + 1];
    a[2] += partials[3 * b + 2];
  }
  block_sum(a);
  if (threadIdx.x == 0) {
    moments->sum += a[0];
    moments->sum_sq += a[1];
    moments->saturated += a[2];
    moments->count += count;
  }
}

// out (C) += column sums of part (G, C) for this block's 32 channels. tile: shared (32, 33).
__device__ void column_sums(float* out, const float* part, int G, int C, double (*tile)[kTile + 1]) {
  const int x = threadIdx.x;
  const int y = threadIdx.y;
  const int c = blockIdx.x * kTile + x;
  double s = 0.0;
  if (c < C) {
    for (int b = y; b < G; b += kTile) s += part[static_cast<int64_t>(b) * C + c];
  }
  tile[y][x] = s;
  __syncthreads();
  for (int half = kTile / 2; half > 0; half /= 2) {
    if (y < half) tile[y][x] += tile[y + half][x];
    __syncthreads();
  }
  if (y == 0 && c < C) out[c] += static_cast<float>(tile[0][x]);
  __syncthreads();  // tile is written again by the next call
}

// Blocks 0 .. ceil(C / 32) - 1 sum channels; the one block after them, when out_scalar is set, the scalar.
__global__ void __launch_bounds__(kTile* kTile)
    param_grads_kernel(float* out_a, const float* part_a, float* out_b, const float* part_b, float* out_scalar,
                       const float* part_scalar, int G, int C) {
  __shared__ double tile[kTile][kTile + 1];
  if (blockIdx.x == ceil_div(C, kTile)) {
    double a[1] = {0.0};
    for (int b = threadIdx.x + threadIdx.y * kTile; b < G; b += kTile * kTile) a[0] += part_scalar[b];
    block_sum(a);
    if (threadIdx.x == 0 && threadIdx.y == 0) *out_scalar += static_cast<float>(a[0]);
    return;
  }
  column_sums(out_a, part_a, G, C, tile);
  if (out_b != nullptr) column_sums(out_b, part_b, G, C, tile);
}

}  // namespace

void finalize_moments(cpu::SiteMoments* moments, const double* partials, int G, int64_t count, cudaStream_t stream) {
  moments_kernel<<<1, 256, 0, stream>>>(moments, partials, G, static_cast<double>(count));
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
}

void finalize_param_grads(float* out_a, const float* part_a, float* out_b, const float* part_b, float* out_scalar,
                          const float* part_scalar, int G, int C, cudaStream_t stream) {
  const int blocks = static_cast<int>(ceil_div(C, kTile)) + (out_scalar != nullptr ? 1 : 0);
  param_grads_kernel<<<blocks, dim3(kTile, kTile), 0, stream>>>(out_a, part_a, out_b, part_b, out_scalar, part_scalar,
                                                                G, C);
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dytrain::cuda::detail

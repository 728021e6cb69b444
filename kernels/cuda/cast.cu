// f32_to_bf16 (cast.cuh): kernel -> launcher -> entry point.
//
// Memory-bound: 6 bytes per element. When both pointers are 16-byte aligned a thread converts 8 elements per step
// (two 16-byte loads, one 16-byte store) and the n % 8 elements past the last full group go to the first threads of
// the grid; a misaligned view (a weight starting at an odd offset of a flat parameter buffer) takes the scalar kernel
// instead, which is correct for any pointer. One item per thread (the hardware scheduler balances the blocks); the
// grid-stride loop only matters past gridDim.x's limit.
#include "kernels/cuda/cast.cuh"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/norm_rows.cuh"
#include "kernels/cuda/pointer_checks.h"

namespace dytrain::cuda {
namespace {

using namespace detail;

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 0x7fffffff;  // gridDim.x limit; past it the threads loop
constexpr int kVec = 8;                   // elements per 16-byte bf16 store

int grid_for(int64_t work) { return static_cast<int>(std::min(ceil_div(work, kThreads), kMaxGrid)); }

// in, out 16-byte aligned.
__global__ void __launch_bounds__(kThreads)
    f32_to_bf16_vec_kernel(bf16* __restrict__ out, const float* __restrict__ in, int64_t n) {
  const int64_t groups = n / kVec;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = first; g < groups; g += stride) {
    float v[kVec];
    load_f32(v, in + g * kVec);
    Bf16Vec<kVec> o;
#pragma unroll
    for (int e = 0; e < kVec; ++e) o.e[e] = __float2bfloat16_rn(v[e]);
    store_bf16(out + g * kVec, o);
  }
  const int64_t tail = groups * kVec + first;  // < n only for first < n % 8, all in block 0
  if (tail < n) out[tail] = __float2bfloat16_rn(in[tail]);
}

__global__ void __launch_bounds__(kThreads)
    f32_to_bf16_scalar_kernel(bf16* __restrict__ out, const float* __restrict__ in, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    out[i] = __float2bfloat16_rn(in[i]);
  }
}

void launch_f32_to_bf16(bf16* out, const float* in, int64_t n, cudaStream_t stream) {
  if (aligned16(out) && aligned16(in)) {
    f32_to_bf16_vec_kernel<<<grid_for(ceil_div(n, kVec)), kThreads, 0, stream>>>(out, in, n);
  } else {
    f32_to_bf16_scalar_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, in, n);
  }
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void f32_to_bf16(bf16* out, const float* in, int64_t n, cudaStream_t stream) {
  const char* op = "f32_to_bf16";
  if (n < 0) throw std::invalid_argument(op_name(op) + ": n = " + std::to_string(n) + " is negative");
  check_not_null(op, "out", out);
  check_not_null(op, "in", in);
  if (n == 0) return;
  if (overlaps(out, n * 2, in, n * 4)) {
    throw std::invalid_argument(op_name(op) + ": out and in overlap; convert into a separate buffer");
  }
  launch_f32_to_bf16(out, in, n, stream);
}

}  // namespace dytrain::cuda

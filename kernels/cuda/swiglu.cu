// SwiGLU forward and backward (swiglu.cuh): kernel -> launcher -> entry point.
//
// Elementwise and memory-bound (forward 6 bytes per output, backward 10). An item is kVec consecutive columns f of one
// row n: gate at gate_up[n, f], up at gate_up[n, F + f]. With F % 8 == 0 and every pointer 16-byte aligned all rows
// and both halves start on 16-byte boundaries, so kVec = 8 (16-byte accesses); otherwise kVec = 1, correct for any F
// and pointer. One item per thread (the hardware scheduler balances the blocks); the grid-stride loop only matters
// past gridDim.x's limit.
//
// The sigmoid is 1 / (1 + expf(-g)) with IEEE division and the accurate expf (no fast math: the kernels are
// memory-bound, so the exact forms cost nothing), the same expression as the CPU op, so the two differ by a few fp32
// ulps before the bf16 rounding. It saturates cleanly: expf(-g) = inf for g < -88 gives s = 0, h = -0.
#include "kernels/cuda/swiglu.cuh"

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

__device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

// h (N, F); gate_up (N, 2F).
template <int kVec>
__global__ void __launch_bounds__(kThreads)
    swiglu_forward_kernel(bf16* __restrict__ h, const bf16* __restrict__ gate_up, int64_t N, int F) {
  const int per_row = F / kVec;
  const int64_t items = N * per_row;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < items; i += stride) {
    const int64_t n = i / per_row;
    const int f = static_cast<int>(i - n * per_row) * kVec;
    const bf16* gate = gate_up + n * 2 * F + f;
    const Bf16Vec<kVec> gv = load_bf16<kVec>(gate);
    const Bf16Vec<kVec> uv = load_bf16<kVec>(gate + F);
    Bf16Vec<kVec> hv;
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      const float g = __bfloat162float(gv.e[e]);
      hv.e[e] = __float2bfloat16_rn(g * sigmoid(g) * __bfloat162float(uv.e[e]));
    }
    store_bf16(h + n * F + f, hv);
  }
}

// dgate_up (N, 2F); dh (N, F); gate_up (N, 2F).
template <int kVec>
__global__ void __launch_bounds__(kThreads)
    swiglu_backward_kernel(bf16* __restrict__ dgate_up, const bf16* __restrict__ dh, const bf16* __restrict__ gate_up,
                           int64_t N, int F) {
  const int per_row = F / kVec;
  const int64_t items = N * per_row;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < items; i += stride) {
    const int64_t n = i / per_row;
    const int f = static_cast<int>(i - n * per_row) * kVec;
    const int64_t gate_at = n * 2 * F + f;
    const Bf16Vec<kVec> gv = load_bf16<kVec>(gate_up + gate_at);
    const Bf16Vec<kVec> uv = load_bf16<kVec>(gate_up + gate_at + F);
    const Bf16Vec<kVec> dhv = load_bf16<kVec>(dh + n * F + f);
    Bf16Vec<kVec> dgv, duv;
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      const float g = __bfloat162float(gv.e[e]);
      const float u = __bfloat162float(uv.e[e]);
      const float d = __bfloat162float(dhv.e[e]);
      const float s = sigmoid(g);
      dgv.e[e] = __float2bfloat16_rn(d * u * s * (1.0f + g * (1.0f - s)));
      duv.e[e] = __float2bfloat16_rn(d * g * s);
    }
    store_bf16(dgate_up + gate_at, dgv);
    store_bf16(dgate_up + gate_at + F, duv);
  }
}

int grid_for(int64_t items) { return static_cast<int>(std::min(ceil_div(items, kThreads), kMaxGrid)); }

void launch_swiglu_forward(bf16* h, const bf16* gate_up, int64_t N, int F, cudaStream_t stream) {
  if (F % 8 == 0 && aligned16(h) && aligned16(gate_up)) {
    swiglu_forward_kernel<8><<<grid_for(N * (F / 8)), kThreads, 0, stream>>>(h, gate_up, N, F);
  } else {
    swiglu_forward_kernel<1><<<grid_for(N * F), kThreads, 0, stream>>>(h, gate_up, N, F);
  }
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
}

void launch_swiglu_backward(bf16* dgate_up, const bf16* dh, const bf16* gate_up, int64_t N, int F,
                            cudaStream_t stream) {
  if (F % 8 == 0 && aligned16(dgate_up) && aligned16(dh) && aligned16(gate_up)) {
    swiglu_backward_kernel<8><<<grid_for(N * (F / 8)), kThreads, 0, stream>>>(dgate_up, dh, gate_up, N, F);
  } else {
    swiglu_backward_kernel<1><<<grid_for(N * F), kThreads, 0, stream>>>(dgate_up, dh, gate_up, N, F);
  }
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
}

void check_swiglu_shape(const char* op, int64_t N, int F) {
  if (N < 0 || F < 1) {
    throw std::invalid_argument(op_name(op) + ": shape (N=" + std::to_string(N) + ", F=" + std::to_string(F) +
                                ") is not supported: need N >= 0 and F >= 1");
  }
}

void check_disjoint(const char* op, const char* a_name, const void* a, const char* b_name, const void* b,
                    int64_t a_bytes, int64_t b_bytes) {
  if (overlaps(a, a_bytes, b, b_bytes)) {
    throw std::invalid_argument(op_name(op) + ": " + a_name + " overlaps " + b_name +
                                "; the kernel reads one while writing the other: pass separate buffers");
  }
}

}  // namespace

void swiglu_forward(bf16* h, const bf16* gate_up, int64_t N, int F, cudaStream_t stream) {
  const char* op = "swiglu_forward";
  check_swiglu_shape(op, N, F);
  check_not_null(op, "h", h);
  check_not_null(op, "gate_up", gate_up);
  if (N == 0) return;
  const int64_t h_bytes = N * F * 2;
  check_disjoint(op, "h", h, "gate_up", gate_up, h_bytes, 2 * h_bytes);
  launch_swiglu_forward(h, gate_up, N, F, stream);
}

void swiglu_backward(bf16* dgate_up, const bf16* dh, const bf16* gate_up, int64_t N, int F, cudaStream_t stream) {
  const char* op = "swiglu_backward";
  check_swiglu_shape(op, N, F);
  check_not_null(op, "dgate_up", dgate_up);
  check_not_null(op, "dh", dh);
  check_not_null(op, "gate_up", gate_up);
  if (N == 0) return;
  const int64_t h_bytes = N * F * 2;
  check_disjoint(op, "dgate_up", dgate_up, "gate_up", gate_up, 2 * h_bytes, 2 * h_bytes);
  check_disjoint(op, "dgate_up", dgate_up, "dh", dh, 2 * h_bytes, h_bytes);
  launch_swiglu_backward(dgate_up, dh, gate_up, N, F, stream);
}

}  // namespace dytrain::cuda

// RoPE forward and backward (rope.cuh): kernel -> launcher -> entry point.
//
// An item is kVec consecutive pairs (i, i + D/2) of one head: the thread loads both halves, rotates them in fp32 and
// stores them back, so in-place use is safe (no other thread touches those elements). The cos/sin rows of a position
// are read by every head and batch, so they come from cache; the bf16 traffic, 4 bytes per element, is the cost.
// 16-byte accesses (kVec = 8) need D/2 % 8 == 0 (both halves of every head start on 16-byte boundaries, so do the
// table rows), ld % 8 == 0 (every token row does) and aligned x, cos and sin; otherwise kVec = 1, correct for any even
// D, any ld and any pointer (a k slice that starts at an odd column of the qkv rows). Forward and backward differ only
// in the sign of the angle, a template flag. One item per thread (the hardware scheduler balances the blocks); the
// grid-stride loop only matters past gridDim.x's limit.
#include "kernels/cuda/rope.cuh"

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

// x: the (B * T * H) heads of D elements, token rows ld apart; cos, sin (T, D/2). kTranspose: rotate by -angle.
template <int kVec, bool kTranspose>
__global__ void __launch_bounds__(kThreads)
    rope_kernel(bf16* x, const float* __restrict__ cos, const float* __restrict__ sin, int64_t heads, int T, int H,
                int D, int64_t ld) {
  const int half = D / 2;
  const int per_head = half / kVec;
  const int64_t items = heads * per_head;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; item < items; item += stride) {
    const int64_t head = item / per_head;
    const int i = static_cast<int>(item - head * per_head) * kVec;
    const int64_t bt = head / H;
    const int h = static_cast<int>(head - bt * H);
    const int64_t t = bt % T;
    bf16* lo = x + bt * ld + static_cast<int64_t>(h) * D + i;
    bf16* hi = lo + half;
    float c[kVec], s[kVec];
    load_f32(c, cos + t * half + i);
    load_f32(s, sin + t * half + i);
    const Bf16Vec<kVec> lo_in = load_bf16<kVec>(lo);
    const Bf16Vec<kVec> hi_in = load_bf16<kVec>(hi);
    Bf16Vec<kVec> lo_out, hi_out;
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      const float x1 = __bfloat162float(lo_in.e[e]);
      const float x2 = __bfloat162float(hi_in.e[e]);
      const float sn = kTranspose ? -s[e] : s[e];
      lo_out.e[e] = __float2bfloat16_rn(x1 * c[e] - x2 * sn);
      hi_out.e[e] = __float2bfloat16_rn(x2 * c[e] + x1 * sn);
    }
    store_bf16(lo, lo_out);
    store_bf16(hi, hi_out);
  }
}

template <bool kTranspose>
void launch_rope(bf16* x, const float* cos, const float* sin, int B, int T, int H, int D, int64_t ld,
                 cudaStream_t stream) {
  const int64_t heads = static_cast<int64_t>(B) * T * H;
  const int half = D / 2;
  const bool vec = half % 8 == 0 && ld % 8 == 0 && aligned16(x) && aligned16(cos) && aligned16(sin);
  const int64_t items = heads * (vec ? half / 8 : half);
  const int grid = static_cast<int>(std::min(ceil_div(items, kThreads), kMaxGrid));
  if (vec) {
    rope_kernel<8, kTranspose><<<grid, kThreads, 0, stream>>>(x, cos, sin, heads, T, H, D, ld);
  } else {
    rope_kernel<1, kTranspose><<<grid, kThreads, 0, stream>>>(x, cos, sin, heads, T, H, D, ld);
  }
  DYTRAIN_CUDA_CHECK(cudaGetLastError());
}

void check_arguments(const char* op, const char* x_name, const bf16* x, const float* cos, const float* sin, int B,
                     int T, int H, int D, int64_t ld) {
  if (B < 0 || T < 0 || H < 0 || D < 2 || D % 2 != 0) {
    throw std::invalid_argument(op_name(op) + ": shape (B=" + std::to_string(B) + ", T=" + std::to_string(T) +
                                ", H=" + std::to_string(H) + ", D=" + std::to_string(D) +
                                ") is not supported: need B, T, H >= 0 and the head size D even and >= 2");
  }
  if (ld < static_cast<int64_t>(H) * D) {
    throw std::invalid_argument(op_name(op) + ": ld = " + std::to_string(ld) +
                                " is smaller than H * D = " + std::to_string(static_cast<int64_t>(H) * D) +
                                ": ld is the distance between token rows, at least the slice's width");
  }
  check_not_null(op, x_name, x);
  check_not_null(op, "cos", cos);
  check_not_null(op, "sin", sin);
}

}  // namespace

void rope_forward(bf16* x, const float* cos, const float* sin, int B, int T, int H, int D, int64_t ld,
                  cudaStream_t stream) {
  check_arguments("rope_forward", "x", x, cos, sin, B, T, H, D, ld);
  if (static_cast<int64_t>(B) * T * H == 0) return;
  launch_rope<false>(x, cos, sin, B, T, H, D, ld, stream);
}

void rope_backward(bf16* dx, const float* cos, const float* sin, int B, int T, int H, int D, int64_t ld,
                   cudaStream_t stream) {
  check_arguments("rope_backward", "dx", dx, cos, sin, B, T, H, D, ld);
  if (static_cast<int64_t>(B) * T * H == 0) return;
  launch_rope<true>(dx, cos, sin, B, T, H, D, ld, stream);
}

}  // namespace dytrain::cuda

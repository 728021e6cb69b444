// DyT forward and backward kernels (dyt.cuh), on the row layout of norm_rows.cuh: kernel -> launcher -> entry point.
//
// tanh. tanhf costs more instructions than a memory-bound kernel can hide and tanh.approx.f32 is only good to 2^-11,
// which 1 - tanh^2 turns into percent errors near saturation. Here, with a = |z| and e = exp(-2a) (one MUFU op):
//   tanh(a) = (1 - e) / (1 + e),   1 - tanh(a)^2 = 4e / (1 + e)^2,
// both free of cancellation for a >= 1/8 (the sech^2 form stays relatively accurate deep into saturation, where
// 1 - t*t would cancel to 0), with relative errors of a few 1e-6 (from __expf's argument rounding); below 1/8 the odd
// Taylor series to a^7 (truncation < 2e-9 relative) replaces the cancelling 1 - e.
//
// Forward. Elementwise; gamma and beta for the thread's channels sit in registers for all its rows. With moments,
// each thread sums its elements of a row in fp32 (at most 16 of them) and adds the row's sums to fp64 accumulators;
// blocks reduce those in a fixed order and write one (sum, sum_sq, saturated) partial each; a one-block kernel adds
// the partials in block order in fp64. fp64 rather than fp32 Kahan: the fp64 adds happen once per row and thread, not
// per element, so they cost nothing next to the memory traffic, and fp64 keeps the sums exact enough to be added
// across micro-batches and ranks without a compensation term to carry along.
//
// Backward. dt = dy * gamma * (1 - t^2); dx = alpha * dt; dalpha = sum(dt * x); dgamma = sum_rows(dy * t);
// dbeta = sum_rows(dy). Per-channel sums accumulate in fp32 registers over the thread's rows (gamma is re-read from
// L1 each row to keep registers for them), dalpha per row in fp32 then fp64; one partial per block goes to the
// workspace as (dgamma (G, C) | dbeta (G, C) | dalpha (G)), then norm_reduce adds them in block order.
#include "kernels/cuda/dyt.cuh"

#include "kernels/cuda/check.h"
#include "kernels/cuda/norm_reduce.cuh"
#include "kernels/cuda/norm_rows.cuh"

namespace dytrain::cuda {
namespace {

using namespace detail;

struct TanhSech2 {
  float t;      // tanh(z)
  float sech2;  // 1 - tanh(z)^2
};

__device__ __forceinline__ TanhSech2 tanh_sech2(float z) {
  const float a = fabsf(z);
  const float e = __expf(-2.0f * a);  // (0, 1]; 0 for large a
  const float inv = __fdividef(1.0f, 1.0f + e);
  float t = (1.0f - e) * inv;
  float s = 4.0f * e * inv * inv;
  if (a < 0.125f) {
    const float a2 = a * a;
    t = a * fmaf(a2, fmaf(a2, fmaf(a2, -17.0f / 315.0f, 2.0f / 15.0f), -1.0f / 3.0f), 1.0f);
    s = 1.0f - t * t;
  }
  return {copysignf(t, z), s};
}

// kResidual: residual (N, C) += branch first (x is then the residual itself). moment_partials: (gridDim.x, 3) or null.
template <int kVec, int kSlots, bool kResidual>
__global__ void __launch_bounds__(kMaxBlockThreads, min_blocks_per_sm(kVec, kSlots))
    dyt_forward_kernel(bf16* y, bf16* residual, const bf16* x, const bf16* branch, const float* __restrict__ alpha_p,
                       const float* __restrict__ gamma, const float* __restrict__ beta, int64_t N, int C,
                       int threads_per_row, double* __restrict__ moment_partials) {
  const int rows_per_block = blockDim.x / threads_per_row;
  const int r = threadIdx.x / threads_per_row;
  const int j = threadIdx.x % threads_per_row;
  const int accesses = C / kVec;
  const float alpha = *alpha_p;

  float g[kSlots][kVec];
  float b[kSlots][kVec];
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    const int v = j + s * threads_per_row;
#pragma unroll
    for (int e = 0; e < kVec; ++e) g[s][e] = b[s][e] = 0.0f;
    if (v < accesses) {
      load_f32(g[s], gamma + v * kVec);
      if (beta != nullptr) load_f32(b[s], beta + v * kVec);
    }
  }

  double moments[3] = {0.0, 0.0, 0.0};  // sum, sum_sq, saturated
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * rows_per_block + r; row < N;
       row += static_cast<int64_t>(gridDim.x) * rows_per_block) {
    const int64_t row_start = row * C;
    Bf16Vec<kVec> xv[kSlots];
    Bf16Vec<kVec> bv[kSlots];
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int v = j + s * threads_per_row;
      if (v < accesses) {
        xv[s] = load_bf16<kVec>(x + row_start + v * kVec);
        if constexpr (kResidual) bv[s] = load_bf16<kVec>(branch + row_start + v * kVec);
      }
    }
    float sum = 0.0f, sum_sq = 0.0f, saturated = 0.0f;
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int v = j + s * threads_per_row;
      if (v >= accesses) continue;
      Bf16Vec<kVec> yv;
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        float xf = __bfloat162float(xv[s].e[e]);
        if constexpr (kResidual) {
          xv[s].e[e] = __float2bfloat16_rn(xf + __bfloat162float(bv[s].e[e]));
          xf = __bfloat162float(xv[s].e[e]);
        }
        const float z = alpha * xf;
        yv.e[e] = __float2bfloat16_rn(fmaf(g[s][e], tanh_sech2(z).t, b[s][e]));
        sum += xf;
        sum_sq += xf * xf;
        saturated += fabsf(z) > 2.0f ? 1.0f : 0.0f;
      }
      store_bf16(y + row_start + v * kVec, yv);
      if constexpr (kResidual) store_bf16(residual + row_start + v * kVec, xv[s]);
    }
    if (moment_partials != nullptr) {
      moments[0] += sum;
      moments[1] += sum_sq;
      moments[2] += saturated;
    }
  }
  store_moment_partial(moment_partials, moments);
}

// accumulate: dx += dL/dx instead of dx = dL/dx. Partials: dgamma (gridDim.x, C), dbeta (gridDim.x, C) or null,
// dalpha (gridDim.x). Dynamic shared memory: column_smem_bytes.
// One resident block of 512 threads: its per-channel sums, three loaded vectors and the tanh need about 85 registers,
// and squeezing them into 64 spills.
template <int kVec, int kSlots>
__global__ void __launch_bounds__(kMaxBlockThreads)
    dyt_backward_kernel(bf16* dx, const bf16* dy, const bf16* x, const float* __restrict__ alpha_p,
                        const float* __restrict__ gamma, int64_t N, int C, int threads_per_row, bool accumulate,
                        float* __restrict__ dgamma_part, float* __restrict__ dbeta_part,
                        float* __restrict__ dalpha_part) {
  extern __shared__ float column_smem[];
  const int rows_per_block = blockDim.x / threads_per_row;
  const int r = threadIdx.x / threads_per_row;
  const int j = threadIdx.x % threads_per_row;
  const int accesses = C / kVec;
  const float alpha = *alpha_p;

  float dgamma[kSlots][kVec];
  float dbeta[kSlots][kVec];
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
#pragma unroll
    for (int e = 0; e < kVec; ++e) dgamma[s][e] = dbeta[s][e] = 0.0f;
  }
  double dalpha[1] = {0.0};

  for (int64_t row = static_cast<int64_t>(blockIdx.x) * rows_per_block + r; row < N;
       row += static_cast<int64_t>(gridDim.x) * rows_per_block) {
    const int64_t row_start = row * C;
    Bf16Vec<kVec> xv[kSlots];
    Bf16Vec<kVec> dyv[kSlots];
    Bf16Vec<kVec> dxv[kSlots];
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int v = j + s * threads_per_row;
      if (v < accesses) {
        xv[s] = load_bf16<kVec>(x + row_start + v * kVec);
        dyv[s] = load_bf16<kVec>(dy + row_start + v * kVec);
        if (accumulate) dxv[s] = load_bf16<kVec>(dx + row_start + v * kVec);
      }
    }
    float dalpha_row = 0.0f;
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int v = j + s * threads_per_row;
      if (v >= accesses) continue;
      float g[kVec];
      load_f32(g, gamma + v * kVec);
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        const float xf = __bfloat162float(xv[s].e[e]);
        const float dyf = __bfloat162float(dyv[s].e[e]);
        const TanhSech2 ts = tanh_sech2(alpha * xf);
        const float dt = dyf * g[e] * ts.sech2;  // dL/d(alpha x)
        float d = dt * alpha;
        if (accumulate) d += __bfloat162float(dxv[s].e[e]);
        dxv[s].e[e] = __float2bfloat16_rn(d);
        dgamma[s][e] += dyf * ts.t;
        dbeta[s][e] += dyf;
        dalpha_row += dt * xf;
      }
      store_bf16(dx + row_start + v * kVec, dxv[s]);
    }
    dalpha[0] += dalpha_row;
  }

  block_sum(dalpha);
  if (threadIdx.x == 0) dalpha_part[blockIdx.x] = static_cast<float>(dalpha[0]);
  const int64_t part_row = static_cast<int64_t>(blockIdx.x) * C;
  store_column_partials(dgamma_part + part_row, dgamma, column_smem, C, threads_per_row);
  if (dbeta_part != nullptr) store_column_partials(dbeta_part + part_row, dbeta, column_smem, C, threads_per_row);
}

// Launches the forward and returns its grid (the number of moment partials written).
int launch_dyt_forward(bf16* y, bf16* residual, const bf16* x, const bf16* branch, const float* alpha,
                       const float* gamma, const float* beta, int64_t N, int C, double* moment_partials,
                       cudaStream_t stream) {
  const RowLayout l = row_layout(C);
  return dispatch_layout(l, [&](auto vec, auto slots) {
    constexpr int kVec = decltype(vec)::value;
    constexpr int kSlots = decltype(slots)::value;
    auto* kernel =
        residual != nullptr ? dyt_forward_kernel<kVec, kSlots, true> : dyt_forward_kernel<kVec, kSlots, false>;
    return launch_rows(kernel, N, l, 0, stream, y, residual, x, branch, alpha, gamma, beta, N, C, l.threads_per_row,
                       moment_partials);
  });
}

// Launches the backward and returns its grid (the number of partial rows written).
int launch_dyt_backward(bf16* dx, const bf16* dy, const bf16* x, const float* alpha, const float* gamma, int64_t N,
                        int C, bool accumulate, float* dgamma_part, float* dbeta_part, float* dalpha_part,
                        cudaStream_t stream) {
  const RowLayout l = row_layout(C);
  return dispatch_layout(l, [&](auto vec, auto slots) {
    return launch_rows(dyt_backward_kernel<decltype(vec)::value, decltype(slots)::value>, N, l, column_smem_bytes(l, C),
                       stream, dx, dy, x, alpha, gamma, N, C, l.threads_per_row, accumulate, dgamma_part, dbeta_part,
                       dalpha_part);
  });
}

void forward_entry(const char* op, bf16* y, bf16* residual, const bf16* x, const bf16* branch, const float* alpha,
                   const float* gamma, const float* beta, int64_t N, int C, cpu::SiteMoments* moments, void* workspace,
                   size_t workspace_bytes, cudaStream_t stream) {
  check_shape(op, N, C);
  check_tensor(op, "y", y, C);
  check_tensor(op, residual != nullptr ? "residual" : "x", x, C);
  if (residual != nullptr) check_tensor(op, "branch", branch, C);
  check_not_null(op, "alpha", alpha);
  check_tensor(op, "gamma", gamma, C);
  if (beta != nullptr) check_tensor(op, "beta", beta, C);
  if (N == 0) return;
  if (moments != nullptr)
    check_workspace(op, workspace, workspace_bytes, dyt_forward_workspace_bytes(N, C), "dyt_forward_workspace_bytes");
  double* partials = moments != nullptr ? static_cast<double*>(workspace) : nullptr;
  const int grid = launch_dyt_forward(y, residual, x, branch, alpha, gamma, beta, N, C, partials, stream);
  if (moments != nullptr) finalize_moments(moments, partials, grid, N * C, stream);
}

void backward_entry(const char* op, bf16* dx, float* dalpha, float* dgamma, float* dbeta, const bf16* dy, const bf16* x,
                    const float* alpha, const float* gamma, int64_t N, int C, bool accumulate, void* workspace,
                    size_t workspace_bytes, cudaStream_t stream) {
  check_shape(op, N, C);
  check_tensor(op, accumulate ? "dresidual" : "dx", dx, C);
  check_not_null(op, "dalpha", dalpha);
  check_not_null(op, "dgamma", dgamma);
  check_tensor(op, "dy", dy, C);
  check_tensor(op, "x", x, C);
  check_not_null(op, "alpha", alpha);
  check_tensor(op, "gamma", gamma, C);
  if (N == 0) return;
  check_workspace(op, workspace, workspace_bytes, dyt_backward_workspace_bytes(N, C), "dyt_backward_workspace_bytes");
  // Sized for max_grid; the launch uses grid <= max_grid rows of each part, packed from the start.
  const int max_rows = max_grid(N, row_layout(C));
  float* dgamma_part = static_cast<float*>(workspace);
  float* dbeta_part = dbeta != nullptr ? dgamma_part + static_cast<int64_t>(max_rows) * C : nullptr;
  float* dalpha_part = dgamma_part + 2 * static_cast<int64_t>(max_rows) * C;
  const int grid =
      launch_dyt_backward(dx, dy, x, alpha, gamma, N, C, accumulate, dgamma_part, dbeta_part, dalpha_part, stream);
  finalize_param_grads(dgamma, dgamma_part, dbeta, dbeta_part, dalpha, dalpha_part, grid, C, stream);
}

}  // namespace

size_t dyt_forward_workspace_bytes(int64_t N, int C) {
  return partials_workspace_bytes("dyt_forward_workspace_bytes", N, C, 3 * sizeof(double));
}

size_t dyt_backward_workspace_bytes(int64_t N, int C) {
  return partials_workspace_bytes("dyt_backward_workspace_bytes", N, C,
                                  (2 * static_cast<size_t>(C) + 1) * sizeof(float));
}

void dyt_forward(bf16* y, const bf16* x, const float* alpha, const float* gamma, const float* beta, int64_t N, int C,
                 cpu::SiteMoments* moments, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  forward_entry("dyt_forward", y, nullptr, x, nullptr, alpha, gamma, beta, N, C, moments, workspace, workspace_bytes,
                stream);
}

void dyt_residual_forward(bf16* y, bf16* residual, const bf16* branch, const float* alpha, const float* gamma,
                          const float* beta, int64_t N, int C, cpu::SiteMoments* moments, void* workspace,
                          size_t workspace_bytes, cudaStream_t stream) {
  forward_entry("dyt_residual_forward", y, residual, residual, branch, alpha, gamma, beta, N, C, moments, workspace,
                workspace_bytes, stream);
}

void dyt_backward(bf16* dx, float* dalpha, float* dgamma, float* dbeta, const bf16* dy, const bf16* x,
                  const float* alpha, const float* gamma, int64_t N, int C, void* workspace, size_t workspace_bytes,
                  cudaStream_t stream) {
  backward_entry("dyt_backward", dx, dalpha, dgamma, dbeta, dy, x, alpha, gamma, N, C, false, workspace,
                 workspace_bytes, stream);
}

void dyt_residual_backward(bf16* dresidual, float* dalpha, float* dgamma, float* dbeta, const bf16* dy, const bf16* x,
                           const float* alpha, const float* gamma, int64_t N, int C, void* workspace,
                           size_t workspace_bytes, cudaStream_t stream) {
  backward_entry("dyt_residual_backward", dresidual, dalpha, dgamma, dbeta, dy, x, alpha, gamma, N, C, true, workspace,
                 workspace_bytes, stream);
}

}  // namespace dytrain::cuda

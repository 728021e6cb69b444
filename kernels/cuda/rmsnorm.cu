// RMSNorm forward and backward kernels (rmsnorm.cuh), on the row layout of norm_rows.cuh: kernel -> launcher ->
// entry point. Unlike DyT each row needs a reduction (mean of squares forward, sum(w dy x) backward): a row group's
// threads hold their elements in registers (raw bf16), sum their part in fp32, and row_sum combines the warps, so x
// and dy are read once. The loops over rows run the same number of times in every row group of a block (a row past N
// only skips its memory accesses), because row_sum synchronizes the block when a row spans several warps.
//
// With r = rstd: y = x r w;  dx = r w dy - x r^3 / C * sum_j(w_j dy_j x_j);  dweight = sum_rows(dy x r), the CPU op's
// formulas in the same evaluation order. Moments and dweight are reduced as in dyt.cu (fp64 moments, fp32 per-block
// column partials, fixed-order second stage).
#include "kernels/cuda/rmsnorm.cuh"

#include "kernels/cuda/check.h"
#include "kernels/cuda/norm_reduce.cuh"
#include "kernels/cuda/norm_rows.cuh"

namespace dytrain::cuda {
namespace {

using namespace detail;

// kResidual: residual (N, C) += branch first (x is then the residual itself). moment_partials: (gridDim.x, 3) or null.
template <int kVec, int kSlots, bool kResidual>
__global__ void __launch_bounds__(kMaxBlockThreads, min_blocks_per_sm(kVec, kSlots))
    rmsnorm_forward_kernel(bf16* y, float* rstd, bf16* residual, const bf16* x, const bf16* branch,
                           const float* __restrict__ weight, float eps, int64_t N, int C, int threads_per_row,
                           double* __restrict__ moment_partials) {
  __shared__ float red[kMaxWarps];
  const int rows_per_block = blockDim.x / threads_per_row;
  const int r = threadIdx.x / threads_per_row;
  const int j = threadIdx.x % threads_per_row;
  const int accesses = C / kVec;

  float w[kSlots][kVec];
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    const int v = j + s * threads_per_row;
#pragma unroll
    for (int e = 0; e < kVec; ++e) w[s][e] = 0.0f;
    if (v < accesses) load_f32(w[s], weight + v * kVec);
  }

  double moments[3] = {0.0, 0.0, 0.0};  // sum, sum_sq, saturated (always 0)
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * rows_per_block; first < N;
       first += static_cast<int64_t>(gridDim.x) * rows_per_block) {
    const int64_t row = first + r;
    const bool live = row < N;
    const int64_t row_start = row * C;
    Bf16Vec<kVec> xv[kSlots];
    Bf16Vec<kVec> bv[kSlots];
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int v = j + s * threads_per_row;
      if (live && v < accesses) {
        xv[s] = load_bf16<kVec>(x + row_start + v * kVec);
        if constexpr (kResidual) bv[s] = load_bf16<kVec>(branch + row_start + v * kVec);
      }
    }
    float sum = 0.0f, sum_sq = 0.0f;
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int v = j + s * threads_per_row;
      if (!live || v >= accesses) continue;
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        if constexpr (kResidual) {
          xv[s].e[e] = __float2bfloat16_rn(__bfloat162float(xv[s].e[e]) + __bfloat162float(bv[s].e[e]));
        }
        const float xf = __bfloat162float(xv[s].e[e]);
        sum += xf;
        sum_sq += xf * xf;
      }
      if constexpr (kResidual) store_bf16(residual + row_start + v * kVec, xv[s]);
    }
    const float rs = rsqrtf(row_sum(sum_sq, red, threads_per_row) / C + eps);
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int v = j + s * threads_per_row;
      if (!live || v >= accesses) continue;
      Bf16Vec<kVec> yv;
#pragma unroll
      for (int e = 0; e < kVec; ++e) yv.e[e] = __float2bfloat16_rn(__bfloat162float(xv[s].e[e]) * rs * w[s][e]);
      store_bf16(y + row_start + v * kVec, yv);
    }
    if (live && j == 0) rstd[row] = rs;
    if (moment_partials != nullptr) {
      moments[0] += sum;
      moments[1] += sum_sq;
    }
  }
  store_moment_partial(moment_partials, moments);
}

// accumulate: dx += dL/dx instead of dx = dL/dx. dweight_part (gridDim.x, C). Dynamic shared memory:
// column_smem_bytes.
template <int kVec, int kSlots>
__global__ void __launch_bounds__(kMaxBlockThreads, min_blocks_per_sm(kVec, kSlots))
    rmsnorm_backward_kernel(bf16* dx, const bf16* dy, const bf16* x, const float* __restrict__ weight,
                            const float* __restrict__ rstd, int64_t N, int C, int threads_per_row, bool accumulate,
                            float* __restrict__ dweight_part) {
  extern __shared__ float column_smem[];
  __shared__ float red[kMaxWarps];
  const int rows_per_block = blockDim.x / threads_per_row;
  const int r = threadIdx.x / threads_per_row;
  const int j = threadIdx.x % threads_per_row;
  const int accesses = C / kVec;

  float dweight[kSlots][kVec];
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
#pragma unroll
    for (int e = 0; e < kVec; ++e) dweight[s][e] = 0.0f;
  }

  for (int64_t first = static_cast<int64_t>(blockIdx.x) * rows_per_block; first < N;
       first += static_cast<int64_t>(gridDim.x) * rows_per_block) {
    const int64_t row = first + r;
    const bool live = row < N;
    const int64_t row_start = row * C;
    Bf16Vec<kVec> xv[kSlots];
    Bf16Vec<kVec> dyv[kSlots];
    Bf16Vec<kVec> dxv[kSlots];
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int v = j + s * threads_per_row;
      if (live && v < accesses) {
        xv[s] = load_bf16<kVec>(x + row_start + v * kVec);
        dyv[s] = load_bf16<kVec>(dy + row_start + v * kVec);
        if (accumulate) dxv[s] = load_bf16<kVec>(dx + row_start + v * kVec);
      }
    }
    const float rs = live ? rstd[row] : 0.0f;
    float dot = 0.0f;  // this thread's part of sum_j(w_j dy_j x_j)
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int v = j + s * threads_per_row;
      if (!live || v >= accesses) continue;
      float w[kVec];
      load_f32(w, weight + v * kVec);
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        dot += w[e] * __bfloat162float(dyv[s].e[e]) * __bfloat162float(xv[s].e[e]);
      }
    }
    const float k = row_sum(dot, red, threads_per_row) * rs * rs * rs / C;
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int v = j + s * threads_per_row;
      if (!live || v >= accesses) continue;
      float w[kVec];
      load_f32(w, weight + v * kVec);
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        const float xf = __bfloat162float(xv[s].e[e]);
        const float dyf = __bfloat162float(dyv[s].e[e]);
        float d = rs * w[e] * dyf - xf * k;
        if (accumulate) d += __bfloat162float(dxv[s].e[e]);
        dxv[s].e[e] = __float2bfloat16_rn(d);
        dweight[s][e] += dyf * (xf * rs);
      }
      store_bf16(dx + row_start + v * kVec, dxv[s]);
    }
  }
  store_column_partials(dweight_part + static_cast<int64_t>(blockIdx.x) * C, dweight, column_smem, C, threads_per_row);
}

// Launches the forward and returns its grid (the number of moment partials written).
int launch_rmsnorm_forward(bf16* y, float* rstd, bf16* residual, const bf16* x, const bf16* branch, const float* weight,
                           float eps, int64_t N, int C, double* moment_partials, cudaStream_t stream) {
  const RowLayout l = row_layout(C);
  return dispatch_layout(l, [&](auto vec, auto slots) {
    constexpr int kVec = decltype(vec)::value;
    constexpr int kSlots = decltype(slots)::value;
    auto* kernel =
        residual != nullptr ? rmsnorm_forward_kernel<kVec, kSlots, true> : rmsnorm_forward_kernel<kVec, kSlots, false>;
    return launch_rows(kernel, N, l, 0, stream, y, rstd, residual, x, branch, weight, eps, N, C, l.threads_per_row,
                       moment_partials);
  });
}

// Launches the backward and returns its grid (the number of partial rows written).
int launch_rmsnorm_backward(bf16* dx, const bf16* dy, const bf16* x, const float* weight, const float* rstd, int64_t N,
                            int C, bool accumulate, float* dweight_part, cudaStream_t stream) {
  const RowLayout l = row_layout(C);
  return dispatch_layout(l, [&](auto vec, auto slots) {
    return launch_rows(rmsnorm_backward_kernel<decltype(vec)::value, decltype(slots)::value>, N, l,
                       column_smem_bytes(l, C), stream, dx, dy, x, weight, rstd, N, C, l.threads_per_row, accumulate,
                       dweight_part);
  });
}

void forward_entry(const char* op, bf16* y, float* rstd, bf16* residual, const bf16* x, const bf16* branch,
                   const float* weight, float eps, int64_t N, int C, cpu::SiteMoments* moments, void* workspace,
                   size_t workspace_bytes, cudaStream_t stream) {
  check_shape(op, N, C);
  check_tensor(op, "y", y, C);
  check_not_null(op, "rstd", rstd);
  check_tensor(op, residual != nullptr ? "residual" : "x", x, C);
  if (residual != nullptr) check_tensor(op, "branch", branch, C);
  check_tensor(op, "weight", weight, C);
  if (N == 0) return;
  if (moments != nullptr) {
    check_workspace(op, workspace, workspace_bytes, rmsnorm_forward_workspace_bytes(N, C),
                    "rmsnorm_forward_workspace_bytes");
  }
  double* partials = moments != nullptr ? static_cast<double*>(workspace) : nullptr;
  const int grid = launch_rmsnorm_forward(y, rstd, residual, x, branch, weight, eps, N, C, partials, stream);
  if (moments != nullptr) finalize_moments(moments, partials, grid, N * C, stream);
}

void backward_entry(const char* op, bf16* dx, float* dweight, const bf16* dy, const bf16* x, const float* weight,
                    const float* rstd, int64_t N, int C, bool accumulate, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream) {
  check_shape(op, N, C);
  check_tensor(op, accumulate ? "dresidual" : "dx", dx, C);
  check_not_null(op, "dweight", dweight);
  check_tensor(op, "dy", dy, C);
  check_tensor(op, "x", x, C);
  check_tensor(op, "weight", weight, C);
  check_not_null(op, "rstd", rstd);
  if (N == 0) return;
  check_workspace(op, workspace, workspace_bytes, rmsnorm_backward_workspace_bytes(N, C),
                  "rmsnorm_backward_workspace_bytes");
  float* dweight_part = static_cast<float*>(workspace);
  const int grid = launch_rmsnorm_backward(dx, dy, x, weight, rstd, N, C, accumulate, dweight_part, stream);
  finalize_param_grads(dweight, dweight_part, nullptr, nullptr, nullptr, nullptr, grid, C, stream);
}

}  // namespace

size_t rmsnorm_forward_workspace_bytes(int64_t N, int C) {
  return partials_workspace_bytes("rmsnorm_forward_workspace_bytes", N, C, 3 * sizeof(double));
}

size_t rmsnorm_backward_workspace_bytes(int64_t N, int C) {
  return partials_workspace_bytes("rmsnorm_backward_workspace_bytes", N, C, static_cast<size_t>(C) * sizeof(float));
}

void rmsnorm_forward(bf16* y, float* rstd, const bf16* x, const float* weight, float eps, int64_t N, int C,
                     cpu::SiteMoments* moments, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  forward_entry("rmsnorm_forward", y, rstd, nullptr, x, nullptr, weight, eps, N, C, moments, workspace, workspace_bytes,
                stream);
}

void rmsnorm_residual_forward(bf16* y, float* rstd, bf16* residual, const bf16* branch, const float* weight, float eps,
                              int64_t N, int C, cpu::SiteMoments* moments, void* workspace, size_t workspace_bytes,
                              cudaStream_t stream) {
  forward_entry("rmsnorm_residual_forward", y, rstd, residual, residual, branch, weight, eps, N, C, moments, workspace,
                workspace_bytes, stream);
}

void rmsnorm_backward(bf16* dx, float* dweight, const bf16* dy, const bf16* x, const float* weight, const float* rstd,
                      int64_t N, int C, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  backward_entry("rmsnorm_backward", dx, dweight, dy, x, weight, rstd, N, C, false, workspace, workspace_bytes, stream);
}

void rmsnorm_residual_backward(bf16* dresidual, float* dweight, const bf16* dy, const bf16* x, const float* weight,
                               const float* rstd, int64_t N, int C, void* workspace, size_t workspace_bytes,
                               cudaStream_t stream) {
  backward_entry("rmsnorm_residual_backward", dresidual, dweight, dy, x, weight, rstd, N, C, true, workspace,
                 workspace_bytes, stream);
}

}  // namespace dytrain::cuda

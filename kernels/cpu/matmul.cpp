// Bias-free linear layers. With OpenBLAS (DYTRAIN_HAVE_BLAS) all three products are one cblas_sgemm each, the
// backward ones with beta = 1 so they accumulate in place. Without BLAS, OpenMP loops over tiles of output rows,
// with the innermost loop over k, contiguous in memory:
//   forward  out[m, n] = dot(inp[m, :], weight[n, :])   an `omp simd` dot (lane order fixed at compile time);
//   dinp     dinp[m, :] += dout[m, n] * weight[n, :]     axpy over k, n in order;
//   dweight  dweight[n, :] += dout[m, n] * inp[m, :]     axpy over k, m in order.
// Each output element is owned by one thread and summed in a fixed order, so results do not depend on the thread count.
#include "kernels/cpu/matmul.h"

#include <algorithm>

#ifdef DYTRAIN_HAVE_BLAS
#include <cblas.h>
#endif

namespace dytrain::cpu {

#ifdef DYTRAIN_HAVE_BLAS

void matmul_forward(float* out, const float* inp, const float* weight, int64_t M, int64_t K, int64_t N) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, inp, K, weight, K, 0.0f, out, N);
}

void matmul_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight, int64_t M,
                     int64_t K, int64_t N) {
  if (dinp) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dout, N, weight, K, 1.0f, dinp, K);
  if (dweight)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dout, N, inp, K, 1.0f, dweight, K);
}

#else

namespace {
// Each thread owns kTile rows of the output and streams the other operand in blocks of kBlock rows (32 KiB at
// K = 256), which stay in L2 while all kTile rows use them: the streamed operand is read M / kTile times from memory
// instead of M times.
constexpr int64_t kTile = 64;
constexpr int64_t kBlock = 32;
}  // namespace

void matmul_forward(float* out, const float* inp, const float* weight, int64_t M, int64_t K, int64_t N) {
  const int64_t tiles = (M + kTile - 1) / kTile;
#pragma omp parallel for schedule(static)
  for (int64_t tile = 0; tile < tiles; ++tile) {
    const int64_t m_end = std::min(M, (tile + 1) * kTile);
    for (int64_t n0 = 0; n0 < N; n0 += kBlock) {
      const int64_t n_end = std::min(N, n0 + kBlock);
      for (int64_t m = tile * kTile; m < m_end; ++m) {
        const float* x = inp + m * K;
        for (int64_t n = n0; n < n_end; ++n) {
          const float* w = weight + n * K;
          float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
          for (int64_t k = 0; k < K; ++k) acc += x[k] * w[k];
          out[m * N + n] = acc;
        }
      }
    }
  }
}

void matmul_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight, int64_t M,
                     int64_t K, int64_t N) {
  if (dinp) {
    const int64_t tiles = (M + kTile - 1) / kTile;
#pragma omp parallel for schedule(static)
    for (int64_t tile = 0; tile < tiles; ++tile) {
      const int64_t m_end = std::min(M, (tile + 1) * kTile);
      for (int64_t n0 = 0; n0 < N; n0 += kBlock) {  // n in order for every dinp element
        const int64_t n_end = std::min(N, n0 + kBlock);
        for (int64_t m = tile * kTile; m < m_end; ++m) {
          float* di = dinp + m * K;
          for (int64_t n = n0; n < n_end; ++n) {
            const float g = dout[m * N + n];
            const float* w = weight + n * K;
            for (int64_t k = 0; k < K; ++k) di[k] += g * w[k];
          }
        }
      }
    }
  }
  if (dweight) {
    const int64_t tiles = (N + kTile - 1) / kTile;
#pragma omp parallel for schedule(static)
    for (int64_t tile = 0; tile < tiles; ++tile) {
      const int64_t n_end = std::min(N, (tile + 1) * kTile);
      for (int64_t m0 = 0; m0 < M; m0 += kBlock) {  // m in order for every dweight element
        const int64_t m_end = std::min(M, m0 + kBlock);
        for (int64_t n = tile * kTile; n < n_end; ++n) {
          float* dw = dweight + n * K;
          for (int64_t m = m0; m < m_end; ++m) {
            const float g = dout[m * N + n];
            const float* x = inp + m * K;
            for (int64_t k = 0; k < K; ++k) dw[k] += g * x[k];
          }
        }
      }
    }
  }
}

#endif

}  // namespace dytrain::cpu

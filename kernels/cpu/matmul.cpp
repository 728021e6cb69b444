// Bias-free linear layers. With OpenBLAS (DYTRAIN_HAVE_BLAS) all three products are one cblas_sgemm each, the
// backward ones with beta = 1 so they accumulate in place. Without BLAS, OpenMP loops that keep the innermost loop
// contiguous in memory:
//   forward  out[m, n] = dot(inp[m, :], weight[n, :])   rows of 4 inputs share each weight row while it is in cache;
//   dinp     dinp[m, :] += dout[m, n] * weight[n, :]     axpy over k, parallel over m;
//   dweight  dweight[n, :] += dout[m, n] * inp[m, :]     axpy over k, parallel over n, m in order.
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
constexpr int64_t kRowTile = 4;  // input rows sharing one pass over the weight
}

void matmul_forward(float* out, const float* inp, const float* weight, int64_t M, int64_t K, int64_t N) {
  const int64_t tiles = (M + kRowTile - 1) / kRowTile;
#pragma omp parallel for schedule(static)
  for (int64_t tile = 0; tile < tiles; ++tile) {
    const int64_t m0 = tile * kRowTile;
    const int64_t rows = std::min(kRowTile, M - m0);
    for (int64_t n = 0; n < N; ++n) {
      const float* w = weight + n * K;
      for (int64_t r = 0; r < rows; ++r) {
        const float* x = inp + (m0 + r) * K;
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int64_t k = 0; k < K; ++k) acc += x[k] * w[k];
        out[(m0 + r) * N + n] = acc;
      }
    }
  }
}

void matmul_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight, int64_t M,
                     int64_t K, int64_t N) {
  if (dinp) {
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; ++m) {
      float* di = dinp + m * K;
      for (int64_t n = 0; n < N; ++n) {
        const float g = dout[m * N + n];
        const float* w = weight + n * K;
        for (int64_t k = 0; k < K; ++k) di[k] += g * w[k];
      }
    }
  }
  if (dweight) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      float* dw = dweight + n * K;
      for (int64_t m = 0; m < M; ++m) {
        const float g = dout[m * N + n];
        const float* x = inp + m * K;
        for (int64_t k = 0; k < K; ++k) dw[k] += g * x[k];
      }
    }
  }
}

#endif

}  // namespace dytrain::cpu

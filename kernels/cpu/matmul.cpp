// Bias-free linear layers. With OpenBLAS (DYTRAIN_HAVE_BLAS) each product is cut into square tiles of its output,
// spread over OpenMP threads, and each tile is one single-threaded cblas_sgemm (the backward ones with beta = 1,
// accumulating in place). OpenBLAS's own threading is not used: it splits a product between its threads by their
// number, and the edge kernels then round some elements differently (observed: grad_norm and the site statistics
// differing in the last bits between 1 and 2 threads at M 1000 x K 100 x N 320). The tile edge is a function of the
// output's shape alone (tile_edge), so the result depends only on the shapes, never on the thread count.
// Without BLAS, OpenMP loops over tiles of output rows, with the innermost loop
// over k, contiguous in memory:
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

namespace {

// The tile edge of a (R, C) output: 256 (packing the operands then costs about 2/256 of the arithmetic), halved down
// to 32 until there are at least kMinTiles tiles, so that the small products of narrow models (a 256 x 256 weight
// gradient is one 256-tile) still feed every thread of a large node. A function of the shape only.
constexpr int64_t kMinTiles = 64;
int64_t tile_edge(int64_t R, int64_t C) {
  int64_t edge = 256;
  while (edge > 32 && ((R + edge - 1) / edge) * ((C + edge - 1) / edge) < kMinTiles) edge /= 2;
  return edge;
}

// Calls gemm(r0, rows, c0, cols) once per tile of a (R, C) output, tiles in any order on any thread. The pthread
// build of OpenBLAS is pinned to one thread here, whatever OPENBLAS_NUM_THREADS gave it; the OpenMP build runs
// single-threaded inside a parallel region by itself, and pinning it would call omp_set_num_threads(1) and turn
// every OpenMP loop of the process single-threaded.
template <class Gemm>
void for_each_tile(int64_t R, int64_t C, Gemm gemm) {
  constexpr int kOpenBlasPthreads = 1;  // openblas_get_parallel(): 0 sequential, 1 pthreads, 2 OpenMP
  if (openblas_get_parallel() == kOpenBlasPthreads && openblas_get_num_threads() != 1) openblas_set_num_threads(1);
  const int64_t edge = tile_edge(R, C);
  const int64_t row_tiles = (R + edge - 1) / edge;
  const int64_t col_tiles = (C + edge - 1) / edge;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < row_tiles * col_tiles; ++t) {
    const int64_t r0 = t / col_tiles * edge;
    const int64_t c0 = t % col_tiles * edge;
    gemm(r0, std::min(edge, R - r0), c0, std::min(edge, C - c0));
  }
}

}  // namespace

void matmul_forward(float* out, const float* inp, const float* weight, int64_t M, int64_t K, int64_t N) {
  for_each_tile(M, N, [&](int64_t m0, int64_t m, int64_t n0, int64_t n) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, K, 1.0f, inp + m0 * K, K, weight + n0 * K, K, 0.0f,
                out + m0 * N + n0, N);
  });
}

void matmul_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight, int64_t M,
                     int64_t K, int64_t N) {
  if (dinp) {
    for_each_tile(M, K, [&](int64_t m0, int64_t m, int64_t k0, int64_t k) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, k, N, 1.0f, dout + m0 * N, N, weight + k0, K, 1.0f,
                  dinp + m0 * K + k0, K);
    });
  }
  if (dweight) {
    for_each_tile(N, K, [&](int64_t n0, int64_t n, int64_t k0, int64_t k) {
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, k, M, 1.0f, dout + n0, N, inp + k0, K, 1.0f,
                  dweight + n0 * K + k0, K);
    });
  }
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

// Causal attention alone on one GPU: the flash kernels (kernels/cuda/flash_attention.cuh) beside the materialized path
// (kernels/cuda/attention.cuh), forward and forward + backward, at the attention sizes of the three training-benchmark
// shapes (configs/bench: 16 x 1024 tokens; d768 = 12 heads of 64, d1024 = 16 x 64, d2048 = 16 x 128, no GQA),
// reported as ms and TFLOP/s against the H100's 989 TFLOP/s dense bf16 peak.
//
//   build/bench/dytrain_bench_attention [--iters N] [--warmup N]
//
// FLOPs as FlashAttention's benchmarks count them: the forward's two products Q K^T and P V are 4 B H T^2 D at full
// size, half of it under the causal mask: 2 B H T^2 D; the backward's five (S again, dP, dV, dK, dQ) are 2.5x that.
// The count is the algorithm's, the same for both paths: the flash backward recomputes S and dP in both of its kernels
// (7 tile products where 5 would do with atomics), which shows up here as a lower figure, not a higher count.
// Each path's output is compared once with the other's (max |difference| of out and of dq), a smoke check of a first
// GPU run; the tests (tests/kernels/cuda/test_flash_attention.cpp) are the real check.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/check.h"
#include "kernels/cuda/flash_attention.cuh"
#include "kernels/cuda/matmul.cuh"

namespace {

using bf16 = __nv_bfloat16;
using namespace dytrain;

constexpr double kPeakFlops = 989e12;  // H100 SXM, dense bf16 tensor cores
constexpr int kB = 16;
constexpr int kT = 1024;

struct Shape {
  const char* name;
  int heads, head_dim;
};

constexpr Shape kShapes[] = {{"d768", 12, 64}, {"d1024", 16, 64}, {"d2048", 16, 128}};

template <class T>
T* device_alloc(size_t n) {
  T* p = nullptr;
  DYTRAIN_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(n, 1) * sizeof(T)));
  return p;
}

void upload_random(bf16* dst, size_t n, unsigned seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<bf16> host(n);
  for (bf16& x : host) x = __float2bfloat16(dist(gen));
  DYTRAIN_CUDA_CHECK(cudaMemcpy(dst, host.data(), n * sizeof(bf16), cudaMemcpyHostToDevice));
}

std::vector<float> download(const bf16* src, size_t n) {
  std::vector<bf16> host(n);
  DYTRAIN_CUDA_CHECK(cudaMemcpy(host.data(), src, n * sizeof(bf16), cudaMemcpyDeviceToHost));
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = __bfloat162float(host[i]);
  return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0.0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

double max_abs(const std::vector<float>& a) {
  double m = 0.0;
  for (float x : a) m = std::max(m, std::fabs(double(x)));
  return m;
}

// Mean milliseconds of f over `iters` calls after `warmup`, timed by events on `stream`.
template <class F>
double time_ms(F f, int warmup, int iters, cudaStream_t stream) {
  for (int i = 0; i < warmup; ++i) f();
  cudaEvent_t start, stop;
  DYTRAIN_CUDA_CHECK(cudaEventCreate(&start));
  DYTRAIN_CUDA_CHECK(cudaEventCreate(&stop));
  DYTRAIN_CUDA_CHECK(cudaEventRecord(start, stream));
  for (int i = 0; i < iters; ++i) f();
  DYTRAIN_CUDA_CHECK(cudaEventRecord(stop, stream));
  DYTRAIN_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0.0f;
  DYTRAIN_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / iters;
}

void bench(const Shape& s, int warmup, int iters, cudaStream_t stream) {
  const int H = s.heads, D = s.head_dim;
  const int64_t rows = int64_t(kB) * kT, q_cols = int64_t(H) * D, ld = 3 * q_cols;
  bf16* qkv = device_alloc<bf16>(rows * ld);  // (B*T, 3 H D): q, k, v side by side, as the model's qkv GEMM writes
  bf16* dqkv = device_alloc<bf16>(rows * ld);
  bf16* out = device_alloc<bf16>(rows * q_cols);
  bf16* dout = device_alloc<bf16>(rows * q_cols);
  float* lse = device_alloc<float>(size_t(kB) * H * kT);
  const size_t ws_materialized = cuda::attention_workspace_bytes(kB, kT, H, H, D);
  const size_t ws_flash = cuda::flash_attention_workspace_bytes(kB, kT, H);
  void* ws = device_alloc<unsigned char>(std::max(ws_materialized, ws_flash));
  upload_random(qkv, rows * ld, 1, -2.0f, 2.0f);
  upload_random(dout, rows * q_cols, 2, -1.0f, 1.0f);
  const bf16* q = qkv;
  const bf16* k = qkv + q_cols;
  const bf16* v = qkv + 2 * q_cols;
  cuda::Blas blas(stream);

  auto fwd_materialized = [&] {
    cuda::attention_forward(blas, out, lse, q, k, v, ld, kB, kT, H, H, D, ws, ws_materialized);
  };
  auto bwd_materialized = [&] {
    cuda::attention_backward(blas, dqkv, dqkv + q_cols, dqkv + 2 * q_cols, dout, out, lse, q, k, v, ld, kB, kT, H, H,
                             D, ws, ws_materialized);
  };
  auto fwd_flash = [&] { cuda::flash_attention_forward(out, lse, q, k, v, ld, kB, kT, H, H, D, stream); };
  auto bwd_flash = [&] {
    cuda::flash_attention_backward(dqkv, dqkv + q_cols, dqkv + 2 * q_cols, dout, out, lse, q, k, v, ld, kB, kT, H, H,
                                   D, ws, ws_flash, stream);
  };

  // One run of each path for the smoke comparison: out, and dq (the first q_cols columns of dqkv).
  auto outputs = [&](auto fwd, auto bwd) {
    fwd();
    bwd();
    DYTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::vector<float> o = download(out, rows * q_cols);
    std::vector<float> g = download(dqkv, rows * ld);
    return std::make_pair(o, g);
  };
  const auto [out_m, dqkv_m] = outputs(fwd_materialized, bwd_materialized);
  const auto [out_f, dqkv_f] = outputs(fwd_flash, bwd_flash);
  std::vector<float> dq_m(rows * q_cols), dq_f(rows * q_cols);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(&dqkv_m[r * ld], q_cols, &dq_m[r * q_cols]);
    std::copy_n(&dqkv_f[r * ld], q_cols, &dq_f[r * q_cols]);
  }

  const double fwd_flops = 2.0 * kB * H * double(kT) * kT * D;
  const double total_flops = 3.5 * fwd_flops;
  struct Path {
    const char* name;
    double fwd_ms, total_ms;
  };
  const Path paths[] = {
      {"materialized", time_ms(fwd_materialized, warmup, iters, stream),
       time_ms([&] { fwd_materialized(); bwd_materialized(); }, warmup, iters, stream)},
      {"flash", time_ms(fwd_flash, warmup, iters, stream),
       time_ms([&] { fwd_flash(); bwd_flash(); }, warmup, iters, stream)},
  };
  for (const Path& p : paths) {
    const double fwd_tflops = fwd_flops / (p.fwd_ms * 1e-3) / 1e12;
    const double total_tflops = total_flops / (p.total_ms * 1e-3) / 1e12;
    std::printf("%-6s B%d T%d H%-2d D%-3d %-12s fwd %7.3f ms %6.1f TFLOP/s (%4.1f%%)  fwd+bwd %7.3f ms %6.1f TFLOP/s "
                "(%4.1f%%)\n",
                s.name, kB, kT, H, D, p.name, p.fwd_ms, fwd_tflops, 100.0 * fwd_tflops * 1e12 / kPeakFlops,
                p.total_ms, total_tflops, 100.0 * total_tflops * 1e12 / kPeakFlops);
  }
  std::printf("%-6s flash vs materialized: max |out difference| %.3g (max |out| %.3g), max |dq difference| %.3g "
              "(max |dq| %.3g)\n",
              s.name, max_abs_diff(out_f, out_m), max_abs(out_m), max_abs_diff(dq_f, dq_m), max_abs(dq_m));

  for (void* p : {static_cast<void*>(qkv), static_cast<void*>(dqkv), static_cast<void*>(out),
                  static_cast<void*>(dout), static_cast<void*>(lse), ws}) {
    cudaFree(p);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int warmup = 3, iters = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--iters" || a == "--warmup") && i + 1 < argc) {
      (a == "--iters" ? iters : warmup) = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--iters N] [--warmup N]\n", argv[0]);
      return 2;
    }
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("no CUDA device: nothing to measure\n");
    return 0;
  }
  std::printf("causal attention, one GPU, mean of %d calls after %d warm-up calls; TFLOP/s (algorithmic: fwd "
              "2 B H T^2 D, fwd+bwd 3.5x that) and %% of 989 TFLOP/s\n",
              iters, warmup);
  try {
    cudaStream_t stream;
    DYTRAIN_CUDA_CHECK(cudaStreamCreate(&stream));
    for (const Shape& s : kShapes) bench(s, warmup, std::max(1, iters), stream);
    cudaStreamDestroy(stream);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}

// Linear layers: forward and both backward products against a naive double triple loop on ragged sizes, the +=
// semantics of backward (onto non-zero gradients), skipping a nullptr output, finite differences, and results that are
// bit-identical whatever the thread count.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/matmul.h"
#include "tests/kernels/cpu/op_test_util.h"

// OpenBLAS's own thread count, when the build uses OpenBLAS (weak: null without it). Threads given to OpenBLAS
// when it loads (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS) must not change a result either.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

namespace dytrain::cpu {
namespace {

using test::expect_grad_near;
using test::fd_gradient;
using test::random_vec;
using test::weighted_sum;

// Worst-case error of an fp32 dot product of n terms summed in any order: gamma_n * sum |a_k b_k|, gamma_n ~ n u,
// u = 2^-24 (Higham, Accuracy and Stability, 3.1), plus one rounding of the final accumulation.
double dot_tolerance(int64_t n, double abs_sum) { return (n + 2) * std::ldexp(1.0, -24) * abs_sum + 1e-30; }

void check_matmul(int64_t M, int64_t K, int64_t N, uint32_t seed) {
  SCOPED_TRACE(testing::Message() << "M=" << M << " K=" << K << " N=" << N);
  const auto inp = random_vec(M * K, seed);
  const auto weight = random_vec(N * K, seed + 1);
  const auto dout = random_vec(M * N, seed + 2);
  std::vector<float> out(M * N, 123.0f);  // forward overwrites whatever was there
  matmul_forward(out.data(), inp.data(), weight.data(), M, K, N);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double ref = 0.0, abs_sum = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        ref += static_cast<double>(inp[m * K + k]) * weight[n * K + k];
        abs_sum += std::fabs(static_cast<double>(inp[m * K + k]) * weight[n * K + k]);
      }
      EXPECT_NEAR(out[m * N + n], ref, dot_tolerance(K, abs_sum));
    }
  }

  // Backward onto non-zero buffers: the result must be the old contents plus the product.
  const auto dinp0 = random_vec(M * K, seed + 3);
  const auto dweight0 = random_vec(N * K, seed + 4);
  auto dinp = dinp0;
  auto dweight = dweight0;
  matmul_backward(dinp.data(), dweight.data(), dout.data(), inp.data(), weight.data(), M, K, N);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t k = 0; k < K; ++k) {
      double ref = dinp0[m * K + k], abs_sum = std::fabs(ref);
      for (int64_t n = 0; n < N; ++n) {
        ref += static_cast<double>(dout[m * N + n]) * weight[n * K + k];
        abs_sum += std::fabs(static_cast<double>(dout[m * N + n]) * weight[n * K + k]);
      }
      EXPECT_NEAR(dinp[m * K + k], ref, dot_tolerance(N + 1, abs_sum));
    }
  }
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      double ref = dweight0[n * K + k], abs_sum = std::fabs(ref);
      for (int64_t m = 0; m < M; ++m) {
        ref += static_cast<double>(dout[m * N + n]) * inp[m * K + k];
        abs_sum += std::fabs(static_cast<double>(dout[m * N + n]) * inp[m * K + k]);
      }
      EXPECT_NEAR(dweight[n * K + k], ref, dot_tolerance(M + 1, abs_sum));
    }
  }

  // A nullptr output is skipped and the other is unchanged by its absence.
  auto dinp_only = dinp0;
  matmul_backward(dinp_only.data(), nullptr, dout.data(), inp.data(), weight.data(), M, K, N);
  EXPECT_EQ(dinp_only, dinp);
  auto dweight_only = dweight0;
  matmul_backward(nullptr, dweight_only.data(), dout.data(), inp.data(), weight.data(), M, K, N);
  EXPECT_EQ(dweight_only, dweight);
}

TEST(CpuMatmul, MatchesNaiveTripleLoop) {
  check_matmul(3, 5, 7, 40);
  check_matmul(1, 1, 1, 41);
  check_matmul(33, 70, 19, 42);
  check_matmul(130, 257, 66, 43);  // past BLAS and row-tile blocking boundaries
}

TEST(CpuMatmul, BackwardMatchesFiniteDifferences) {
  const int64_t M = 3, K = 5, N = 7;
  auto inp = random_vec(M * K, 50);
  auto weight = random_vec(N * K, 51);
  const auto w = random_vec(M * N, 52);
  std::vector<float> dinp(M * K), dweight(N * K);
  matmul_backward(dinp.data(), dweight.data(), w.data(), inp.data(), weight.data(), M, K, N);
  auto obj = [&] {
    std::vector<float> out(M * N);
    matmul_forward(out.data(), inp.data(), weight.data(), M, K, N);
    return weighted_sum(out, w);
  };
  // The objective is linear in each element, so there is no truncation error; noise is the fp32 rounding of at
  // most 7 outputs of size <= 5: sqrt(7) * 3e-7 / 2e-2 ~ 4e-5. Tolerance 2e-4.
  expect_grad_near(dinp.data(), fd_gradient(inp.data(), inp.size(), 1e-2, obj), 2e-4, 1e-4, "dinp");
  expect_grad_near(dweight.data(), fd_gradient(weight.data(), weight.size(), 1e-2, obj), 2e-4, 1e-4, "dweight");
}

// 1, 2 and 3 threads (OpenMP and OpenBLAS both), on shapes that are not multiples of any kernel's unroll and big
// enough for OpenBLAS to use its threads: OpenBLAS splitting a product by thread count gave 1 vs 2 thread
// differences in the last bits on exactly these shapes.
TEST(CpuMatmul, BitIdenticalWhateverTheThreadCount) {
  const int64_t shapes[][3] = {{1000, 100, 320}, {513, 77, 999}, {1023, 130, 381}};
  for (const auto& shape : shapes) {
    const int64_t M = shape[0], K = shape[1], N = shape[2];
    SCOPED_TRACE(testing::Message() << "M=" << M << " K=" << K << " N=" << N);
    const auto inp = random_vec(M * K, 40), weight = random_vec(N * K, 41), dout = random_vec(M * N, 42);
    std::vector<float> out[3], dinp[3], dweight[3];
    for (int t = 0; t < 3; ++t) {
      test::ScopedThreads threads(t + 1);
      if (openblas_set_num_threads) openblas_set_num_threads(t + 1);
      out[t].assign(M * N, 0.0f);
      dinp[t].assign(M * K, 0.5f);
      dweight[t].assign(N * K, 0.25f);
      matmul_forward(out[t].data(), inp.data(), weight.data(), M, K, N);
      matmul_backward(dinp[t].data(), dweight[t].data(), dout.data(), inp.data(), weight.data(), M, K, N);
    }
    for (int t = 1; t < 3; ++t) {
      EXPECT_EQ(out[0], out[t]) << t + 1 << " threads";
      EXPECT_EQ(dinp[0], dinp[t]) << t + 1 << " threads";
      EXPECT_EQ(dweight[0], dweight[t]) << t + 1 << " threads";
    }
  }
}

}  // namespace
}  // namespace dytrain::cpu

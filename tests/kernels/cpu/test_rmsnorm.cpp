// RMSNorm: forward and rstd against the formula in double, moments, backward against finite differences for x and
// weight, the += convention, and bit-identical results across thread counts.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/rmsnorm.h"
#include "tests/kernels/cpu/op_test_util.h"

namespace dytrain::cpu {
namespace {

using test::expect_grad_near;
using test::fd_gradient;
using test::random_vec;
using test::weighted_sum;

struct RmsCase {
  int64_t N = 37;  // crosses the 32-row block of the dweight reduction
  int C = 7;
  float eps = 1e-5f;
  std::vector<float> x = random_vec(N * C, 30, -2.0f, 2.0f);
  std::vector<float> weight = random_vec(C, 31, 0.5f, 1.5f);
  std::vector<float> w = random_vec(N * C, 32);  // objective weights, i.e. dy

  std::vector<float> forward(std::vector<float>* rstd = nullptr, SiteMoments* m = nullptr) const {
    std::vector<float> y(N * C), r(N);
    rmsnorm_forward(y.data(), r.data(), x.data(), weight.data(), eps, N, C, m);
    if (rstd) *rstd = r;
    return y;
  }
  void backward(std::vector<float>& dx, std::vector<float>& dweight) const {
    std::vector<float> rstd;
    forward(&rstd);
    rmsnorm_backward(dx.data(), dweight.data(), w.data(), x.data(), weight.data(), rstd.data(), N, C);
  }
};

TEST(CpuRMSNorm, ForwardMatchesFormulaAndMoments) {
  RmsCase tc;
  std::vector<float> rstd;
  SiteMoments m;
  const auto y = tc.forward(&rstd, &m);
  double sum = 0.0, sum_sq = 0.0;
  for (int64_t n = 0; n < tc.N; ++n) {
    double ms = 0.0;
    for (int c = 0; c < tc.C; ++c) ms += static_cast<double>(tc.x[n * tc.C + c]) * tc.x[n * tc.C + c];
    const double r = 1.0 / std::sqrt(ms / tc.C + tc.eps);
    // rstd is rounded once from double (|r| < 10, so 1e-6 relative is a few ulps); y adds two fp32 products.
    EXPECT_NEAR(rstd[n], r, 1e-6 * r);
    for (int c = 0; c < tc.C; ++c) {
      EXPECT_NEAR(y[n * tc.C + c], tc.x[n * tc.C + c] * r * tc.weight[c], 2e-6);
      sum += tc.x[n * tc.C + c];
    }
    sum_sq += ms;
  }
  // Same fp32 values summed in double in another order: differences ~1e-13.
  EXPECT_NEAR(m.sum, sum, 1e-9);
  EXPECT_NEAR(m.sum_sq, sum_sq, 1e-9);
  EXPECT_EQ(m.saturated, 0.0);
  EXPECT_EQ(m.count, static_cast<double>(tc.N * tc.C));
}

TEST(CpuRMSNorm, BackwardMatchesFiniteDifferences) {
  RmsCase tc;
  std::vector<float> dx(tc.N * tc.C), dweight(tc.C);
  tc.backward(dx, dweight);
  auto obj = [&] { return weighted_sum(tc.forward(), tc.w); };
  // Step 1e-3: moving x[n, c] changes the C = 7 outputs of row n (noise ~sqrt(7) * 2e-7 / 2e-3 ~ 3e-4 with |y| up
  // to ~3) and truncation h^2/6 |f'''| is ~1e-6 for rows with rms ~1; moving weight[c] touches N outputs (~1e-3).
  // Tolerance 3e-3 + 3e-3 relative stays above that while a missing term of dx is O(0.1..1).
  expect_grad_near(dx.data(), fd_gradient(tc.x.data(), tc.x.size(), 1e-3, obj), 3e-3, 3e-3, "dx");
  expect_grad_near(dweight.data(), fd_gradient(tc.weight.data(), tc.weight.size(), 1e-3, obj), 3e-3, 3e-3,
                   "dweight");
}

TEST(CpuRMSNorm, BackwardAccumulates) {
  RmsCase tc;
  std::vector<float> dx1(tc.N * tc.C), dw1(tc.C), dx2(tc.N * tc.C), dw2(tc.C);
  tc.backward(dx1, dw1);
  tc.backward(dx2, dw2);
  tc.backward(dx2, dw2);
  // 0 + g, then g + g: exact in fp32.
  for (size_t i = 0; i < dx1.size(); ++i) EXPECT_EQ(dx2[i], 2 * dx1[i]);
  for (int c = 0; c < tc.C; ++c) EXPECT_EQ(dw2[c], 2 * dw1[c]);
}

TEST(CpuRMSNorm, ResultsIndependentOfThreadCount) {
  RmsCase tc;
  tc.N = 301;
  tc.x = random_vec(tc.N * tc.C, 33);
  tc.w = random_vec(tc.N * tc.C, 34);
  std::vector<float> dx1(tc.N * tc.C), dw1(tc.C), dx3(tc.N * tc.C), dw3(tc.C);
  SiteMoments m1, m3;
  {
    test::ScopedThreads threads(1);
    tc.forward(nullptr, &m1);
    tc.backward(dx1, dw1);
  }
  {
    test::ScopedThreads threads(3);
    tc.forward(nullptr, &m3);
    tc.backward(dx3, dw3);
  }
  EXPECT_EQ(m1.sum, m3.sum);
  EXPECT_EQ(m1.sum_sq, m3.sum_sq);
  EXPECT_EQ(dx1, dx3);
  EXPECT_EQ(dw1, dw3);
}

}  // namespace
}  // namespace dytrain::cpu

// DyT: forward against the formula in double, the site moments against a direct count, backward against finite
// differences for x, alpha, gamma and beta, the += convention, and bit-identical results across thread counts.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/dyt.h"
#include "tests/kernels/cpu/op_test_util.h"

namespace dytrain::cpu {
namespace {

using test::expect_grad_near;
using test::fd_gradient;
using test::random_vec;
using test::weighted_sum;

TEST(CpuDyT, ForwardMatchesFormula) {
  const int64_t N = 5;
  const int C = 7;
  const float alpha = 0.8f;
  auto x = random_vec(N * C, 1, -3.0f, 3.0f);
  auto gamma = random_vec(C, 2, 0.5f, 1.5f);
  auto beta = random_vec(C, 3);
  std::vector<float> y(N * C), y_nobias(N * C);
  dyt_forward(y.data(), x.data(), alpha, gamma.data(), beta.data(), N, C, nullptr);
  dyt_forward(y_nobias.data(), x.data(), alpha, gamma.data(), nullptr, N, C, nullptr);
  for (int64_t n = 0; n < N; ++n) {
    for (int c = 0; c < C; ++c) {
      const double t = std::tanh(static_cast<double>(alpha) * x[n * C + c]);
      // |y| <= 2.5: fp32 tanh, one product and one sum are each within an ulp or two, ~1e-7 each.
      EXPECT_NEAR(y[n * C + c], gamma[c] * t + beta[c], 1e-6);
      EXPECT_NEAR(y_nobias[n * C + c], gamma[c] * t, 1e-6);
    }
  }
}

TEST(CpuDyT, MomentsMatchDirectComputationAndAccumulate) {
  const int64_t N = 37;
  const int C = 9;
  const float alpha = 0.9f;
  auto x = random_vec(N * C, 4, -3.0f, 3.0f);  // |alpha x| reaches 2.7, so some elements saturate
  auto gamma = random_vec(C, 5);
  std::vector<float> y(N * C);
  SiteMoments m;
  dyt_forward(y.data(), x.data(), alpha, gamma.data(), nullptr, N, C, &m);

  double sum = 0.0, sum_sq = 0.0, sat = 0.0;
  for (float v : x) {
    sum += v;
    sum_sq += static_cast<double>(v) * v;
    if (std::fabs(alpha * v) > 2.0f) sat += 1.0;
  }
  ASSERT_GT(sat, 0.0);
  ASSERT_LT(sat, static_cast<double>(N * C));
  // Double sums of the same 333 fp32 values in a different order: differences ~1e-13, far below 1e-9.
  EXPECT_NEAR(m.sum, sum, 1e-9);
  EXPECT_NEAR(m.sum_sq, sum_sq, 1e-9);
  EXPECT_EQ(m.saturated, sat);
  EXPECT_EQ(m.count, static_cast<double>(N * C));

  dyt_forward(y.data(), x.data(), alpha, gamma.data(), nullptr, N, C, &m);  // a second micro-batch adds on
  EXPECT_NEAR(m.sum, 2 * sum, 1e-9);
  EXPECT_NEAR(m.sum_sq, 2 * sum_sq, 1e-9);
  EXPECT_EQ(m.saturated, 2 * sat);
  EXPECT_EQ(m.count, 2.0 * N * C);
}

struct DytCase {
  int64_t N = 37;  // crosses the 32-row block of the parameter-gradient reduction
  int C = 7;
  float alpha = 0.7f;
  std::vector<float> x = random_vec(N * C, 10, -2.0f, 2.0f);
  std::vector<float> gamma = random_vec(C, 11, 0.5f, 1.5f);
  std::vector<float> beta = random_vec(C, 12);
  std::vector<float> w = random_vec(N * C, 13);  // objective weights, i.e. dy

  double objective() {
    std::vector<float> y(N * C);
    dyt_forward(y.data(), x.data(), alpha, gamma.data(), beta.data(), N, C, nullptr);
    return weighted_sum(y, w);
  }
  struct Grads {
    std::vector<float> dx, dalpha, dgamma, dbeta;
  };
  Grads zero_grads() const {
    return {std::vector<float>(N * C), std::vector<float>(1), std::vector<float>(C), std::vector<float>(C)};
  }
  void backward(Grads& g) const {
    dyt_backward(g.dx.data(), g.dalpha.data(), g.dgamma.data(), g.dbeta.data(), w.data(), x.data(), alpha,
                 gamma.data(), N, C);
  }
};

TEST(CpuDyT, BackwardMatchesFiniteDifferences) {
  DytCase tc;
  auto g = tc.zero_grads();
  tc.backward(g);
  auto obj = [&] { return tc.objective(); };
  // Step 1e-3: truncation h^2/6 |f'''| <= 1e-6 * (N C |x|^3 for alpha) ~ 5e-4 relative at worst; rounding noise
  // sqrt(touched) * 6e-8 / 2e-3 <= 5e-4 absolute when alpha (all 259 outputs) moves, 3e-5 for one element.
  // Tolerance 2e-3 + 2e-3 relative: a few times those, while any wrong term of the gradient is O(0.1..1) off.
  expect_grad_near(g.dx.data(), fd_gradient(tc.x.data(), tc.x.size(), 1e-3, obj), 2e-3, 2e-3, "dx");
  expect_grad_near(g.dalpha.data(), fd_gradient(&tc.alpha, 1, 1e-3, obj), 2e-3, 2e-3, "dalpha");
  expect_grad_near(g.dgamma.data(), fd_gradient(tc.gamma.data(), tc.gamma.size(), 1e-3, obj), 2e-3, 2e-3, "dgamma");
  expect_grad_near(g.dbeta.data(), fd_gradient(tc.beta.data(), tc.beta.size(), 1e-3, obj), 2e-3, 2e-3, "dbeta");
}

TEST(CpuDyT, BackwardAccumulatesAndSkipsNullBeta) {
  DytCase tc;
  auto once = tc.zero_grads();
  tc.backward(once);
  auto twice = tc.zero_grads();
  tc.backward(twice);
  tc.backward(twice);
  // Each output is 0 + g, then g + g: doubling is exact in fp32.
  for (size_t i = 0; i < once.dx.size(); ++i) EXPECT_EQ(twice.dx[i], 2 * once.dx[i]);
  for (int c = 0; c < tc.C; ++c) {
    EXPECT_EQ(twice.dgamma[c], 2 * once.dgamma[c]);
    EXPECT_EQ(twice.dbeta[c], 2 * once.dbeta[c]);
  }
  EXPECT_EQ(twice.dalpha[0], 2 * once.dalpha[0]);

  auto nob = tc.zero_grads();
  dyt_backward(nob.dx.data(), nob.dalpha.data(), nob.dgamma.data(), nullptr, tc.w.data(), tc.x.data(), tc.alpha,
               tc.gamma.data(), tc.N, tc.C);
  EXPECT_EQ(nob.dx, once.dx);
  EXPECT_EQ(nob.dgamma, once.dgamma);
  EXPECT_EQ(nob.dalpha, once.dalpha);
}

TEST(CpuDyT, ResultsIndependentOfThreadCount) {
  DytCase tc;
  tc.N = 301;
  tc.x = random_vec(tc.N * tc.C, 20, -3.0f, 3.0f);
  tc.w = random_vec(tc.N * tc.C, 21);
  DytCase::Grads g1 = tc.zero_grads(), g3 = tc.zero_grads();
  SiteMoments m1, m3;
  std::vector<float> y(tc.N * tc.C);
  {
    test::ScopedThreads threads(1);
    dyt_forward(y.data(), tc.x.data(), tc.alpha, tc.gamma.data(), nullptr, tc.N, tc.C, &m1);
    tc.backward(g1);
  }
  {
    test::ScopedThreads threads(3);
    dyt_forward(y.data(), tc.x.data(), tc.alpha, tc.gamma.data(), nullptr, tc.N, tc.C, &m3);
    tc.backward(g3);
  }
  EXPECT_EQ(m1.sum, m3.sum);
  EXPECT_EQ(m1.sum_sq, m3.sum_sq);
  EXPECT_EQ(m1.saturated, m3.saturated);
  EXPECT_EQ(g1.dalpha, g3.dalpha);
  EXPECT_EQ(g1.dgamma, g3.dgamma);
  EXPECT_EQ(g1.dbeta, g3.dbeta);
  EXPECT_EQ(g1.dx, g3.dx);
}

}  // namespace
}  // namespace dytrain::cpu

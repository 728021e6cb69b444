// SwiGLU: forward against the formula in double, backward against finite differences for gate and up, the +=
// convention, and finite results for strongly saturated gates.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/swiglu.h"
#include "tests/kernels/cpu/op_test_util.h"

namespace dytrain::cpu {
namespace {

using test::expect_grad_near;
using test::fd_gradient;
using test::random_vec;
using test::weighted_sum;

constexpr int64_t kN = 35;

TEST(CpuSwiGLU, ForwardMatchesFormula) {
  const auto gate = random_vec(kN, 70, -4.0f, 4.0f);
  const auto up = random_vec(kN, 71, -2.0f, 2.0f);
  std::vector<float> h(kN);
  swiglu_forward(h.data(), gate.data(), up.data(), kN);
  for (int64_t i = 0; i < kN; ++i) {
    const double g = gate[i];
    // |h| <= 8: expf, a division and two products, each within an ulp (~5e-7 at 8).
    EXPECT_NEAR(h[i], g / (1.0 + std::exp(-g)) * up[i], 3e-6);
  }
}

TEST(CpuSwiGLU, BackwardMatchesFiniteDifferencesAndAccumulates) {
  auto gate = random_vec(kN, 72, -4.0f, 4.0f);
  auto up = random_vec(kN, 73, -2.0f, 2.0f);
  const auto w = random_vec(kN, 74);
  std::vector<float> dgate(kN), dup(kN);
  swiglu_backward(dgate.data(), dup.data(), w.data(), gate.data(), up.data(), kN);
  auto obj = [&] {
    std::vector<float> h(kN);
    swiglu_forward(h.data(), gate.data(), up.data(), kN);
    return weighted_sum(h, w);
  };
  // Step 1e-3 relative to max(1, |g|): one output moves, noise ~5e-7 / 2e-3 = 2.5e-4 at |h| ~ 8; truncation
  // h^2/6 |silu'''| |up| <= 16e-6 / 6 * 0.5 * 2 ~ 3e-6. Tolerance 1e-3.
  expect_grad_near(dgate.data(), fd_gradient(gate.data(), gate.size(), 1e-3, obj), 1e-3, 1e-3, "dgate");
  expect_grad_near(dup.data(), fd_gradient(up.data(), up.size(), 1e-3, obj), 1e-3, 1e-3, "dup");

  auto dgate2 = dgate, dup2 = dup;
  swiglu_backward(dgate2.data(), dup2.data(), w.data(), gate.data(), up.data(), kN);
  for (int64_t i = 0; i < kN; ++i) {
    EXPECT_EQ(dgate2[i], 2 * dgate[i]);  // g + g is exact
    EXPECT_EQ(dup2[i], 2 * dup[i]);
  }
}

TEST(CpuSwiGLU, SaturatedGatesStayFinite) {
  const std::vector<float> gate = {-1000.0f, -100.0f, 100.0f, 1000.0f};
  const std::vector<float> up = {1.5f, -2.0f, 0.5f, 3.0f};
  const std::vector<float> dh = {1.0f, 1.0f, 1.0f, 1.0f};
  std::vector<float> h(4), dgate(4), dup(4);
  swiglu_forward(h.data(), gate.data(), up.data(), 4);
  swiglu_backward(dgate.data(), dup.data(), dh.data(), gate.data(), up.data(), 4);
  // silu(g) -> 0 for g -> -inf and -> g for g -> +inf; silu'(g) -> 0 and 1 respectively.
  const std::vector<float> h_ref = {0.0f, 0.0f, 50.0f, 3000.0f};
  const std::vector<float> dgate_ref = {0.0f, 0.0f, 0.5f, 3.0f};
  const std::vector<float> dup_ref = {0.0f, 0.0f, 100.0f, 1000.0f};
  for (int i = 0; i < 4; ++i) {
    // exp(100) overflows to inf, so sigmoid(-100) is 0 (exactly 4e-44); exp(-100) = 4e-44 vanishes next to 1.
    EXPECT_NEAR(h[i], h_ref[i], 1e-4f);
    EXPECT_NEAR(dgate[i], dgate_ref[i], 1e-4f);
    EXPECT_NEAR(dup[i], dup_ref[i], 1e-4f);
  }
}

}  // namespace
}  // namespace dytrain::cpu

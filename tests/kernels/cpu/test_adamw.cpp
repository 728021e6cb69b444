// AdamW: one step against values worked out by hand from the formula in adamw.h (with weight decay, a clip factor
// and non-zero moments at t = 3), and the first step from zero moments, which moves each parameter by lr * sign(g).
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/adamw.h"

namespace dytrain::cpu {
namespace {

TEST(CpuAdamW, OneStepMatchesHandComputedValues) {
  AdamWStep s;
  s.lr = 0.01f;
  s.beta1 = 0.9f;
  s.beta2 = 0.95f;
  s.eps = 1e-8f;
  s.weight_decay = 0.1f;
  s.grad_scale = 0.5f;
  s.t = 3;
  std::vector<float> p = {0.5f, -1.2f, 2.0f};
  std::vector<float> m = {0.1f, -0.05f, 0.0f};
  std::vector<float> v = {0.02f, 0.01f, 0.0f};
  const std::vector<float> grad = {0.4f, -0.6f, 0.0f};
  adamw_update(p.data(), m.data(), v.data(), grad.data(), 3, s);

  // Bias corrections: 1 - 0.9^3 = 0.271, 1 - 0.95^3 = 0.142625.
  // [0] g = 0.4 * 0.5 = 0.2; m = 0.9 * 0.1 + 0.1 * 0.2 = 0.11; v = 0.95 * 0.02 + 0.05 * 0.04 = 0.021;
  //     m^ = 0.11 / 0.271 = 0.405904059; v^ = 0.021 / 0.142625 = 0.147239264, sqrt = 0.383717688;
  //     update = 1.057819490; p = 0.5 - 0.01 * (1.057819490 + 0.1 * 0.5) = 0.488921805.
  // [1] g = -0.3; m = -0.045 - 0.03 = -0.075; v = 0.0095 + 0.0045 = 0.014;
  //     m^ = -0.276752768; v^ = 0.098159509, sqrt = 0.313304180; update = -0.883335673;
  //     p = -1.2 - 0.01 * (-0.883335673 - 0.12) = -1.189966643.
  // [2] g = 0: moments stay 0, update 0 / (0 + eps) = 0, only decay: p = 2 - 0.01 * 0.2 = 1.998.
  // Moments: four fp32 roundings (6e-8 relative each) plus the betas' own (0.95f = 0.94999999): 1e-6 relative.
  EXPECT_NEAR(m[0], 0.11, 0.11 * 1e-6);
  EXPECT_NEAR(v[0], 0.021, 0.021 * 1e-6);
  EXPECT_NEAR(m[1], -0.075, 0.075 * 1e-6);
  EXPECT_NEAR(v[1], 0.014, 0.014 * 1e-6);
  EXPECT_EQ(m[2], 0.0f);
  EXPECT_EQ(v[2], 0.0f);
  // Parameters: a handful of roundings of O(1) values, each <= 1.2e-7 (ulp at 1..2): 5e-7 absolute.
  EXPECT_NEAR(p[0], 0.488921805, 5e-7);
  EXPECT_NEAR(p[1], -1.189966643, 5e-7);
  EXPECT_NEAR(p[2], 1.998, 5e-7);
}

TEST(CpuAdamW, FirstStepMovesBySignOfGradient) {
  AdamWStep s;
  s.lr = 0.1f;
  s.weight_decay = 0.0f;
  s.t = 1;
  std::vector<float> p = {1.0f, 1.0f, 1.0f, 1.0f};
  std::vector<float> m(4, 0.0f), v(4, 0.0f);
  const std::vector<float> grad = {3.0f, -0.02f, 1e-3f, -40.0f};
  adamw_update(p.data(), m.data(), v.data(), grad.data(), 4, s);
  // m^ = g and v^ = g^2 at t = 1, so the update is g / (|g| + eps) = sign(g) up to eps / |g| <= 1e-5.
  const std::vector<float> expected = {0.9f, 1.1f, 0.9f, 1.1f};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(p[i], expected[i], 2e-6) << i;
}

}  // namespace
}  // namespace dytrain::cpu

// RoPE: the tables and the forward rotation against an explicit complex rotation in double (the pair
// (x[i], x[i + D/2]) as x[i] + i x[i + D/2], multiplied by e^{i t f_i}), in-place use, backward against finite
// differences, and the += convention.
#include <cmath>
#include <complex>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/rope.h"
#include "tests/kernels/cpu/op_test_util.h"

namespace dytrain::cpu {
namespace {

using test::expect_grad_near;
using test::fd_gradient;
using test::random_vec;
using test::weighted_sum;

constexpr int B = 2, T = 5, H = 3, D = 6;
constexpr double kTheta = 10000.0;

std::complex<double> rotation(int t, int i) {
  const double freq = 1.0 / std::pow(kTheta, static_cast<double>(2 * i) / D);
  return std::polar(1.0, t * freq);
}

TEST(CpuRoPE, TablesAndForwardMatchComplexRotation) {
  std::vector<float> cos(T * D / 2), sin(T * D / 2);
  rope_tables(cos.data(), sin.data(), T, D, kTheta);
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < D / 2; ++i) {
      // One rounding from double: within half an ulp of a value <= 1 (3e-8), 1e-7 allows a one-ulp tie flip.
      EXPECT_NEAR(cos[t * D / 2 + i], rotation(t, i).real(), 1e-7);
      EXPECT_NEAR(sin[t * D / 2 + i], rotation(t, i).imag(), 1e-7);
    }
  }

  const auto x = random_vec(B * T * H * D, 60);
  std::vector<float> y(x.size());
  rope_forward(y.data(), x.data(), cos.data(), sin.data(), B, T, H, D);
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < H; ++h) {
        const int64_t base = ((static_cast<int64_t>(b) * T + t) * H + h) * D;
        for (int i = 0; i < D / 2; ++i) {
          const std::complex<double> z(x[base + i], x[base + i + D / 2]);
          const std::complex<double> r = z * rotation(t, i);
          // Tables rounded to fp32 (3e-8 each) times |x| <= 1, two products and a sum: < 3e-7.
          EXPECT_NEAR(y[base + i], r.real(), 3e-7);
          EXPECT_NEAR(y[base + i + D / 2], r.imag(), 3e-7);
        }
      }
    }
  }

  auto inplace = x;
  rope_forward(inplace.data(), inplace.data(), cos.data(), sin.data(), B, T, H, D);
  EXPECT_EQ(inplace, y);
}

TEST(CpuRoPE, BackwardMatchesFiniteDifferencesAndAccumulates) {
  std::vector<float> cos(T * D / 2), sin(T * D / 2);
  rope_tables(cos.data(), sin.data(), T, D, kTheta);
  auto x = random_vec(B * T * H * D, 61);
  const auto w = random_vec(x.size(), 62);
  std::vector<float> dx(x.size());
  rope_backward(dx.data(), w.data(), cos.data(), sin.data(), B, T, H, D);
  auto obj = [&] {
    std::vector<float> y(x.size());
    rope_forward(y.data(), x.data(), cos.data(), sin.data(), B, T, H, D);
    return weighted_sum(y, w);
  };
  // Linear in x, so no truncation error; each element moves two outputs of size <= 1.5: noise
  // ~2 * 1e-7 / 2e-2 = 1e-5. Tolerance 1e-4.
  expect_grad_near(dx.data(), fd_gradient(x.data(), x.size(), 1e-2, obj), 1e-4, 1e-4, "dx");

  auto dx2 = dx;
  rope_backward(dx2.data(), w.data(), cos.data(), sin.data(), B, T, H, D);
  for (size_t i = 0; i < dx.size(); ++i) EXPECT_EQ(dx2[i], 2 * dx[i]);  // g + g is exact
}

TEST(CpuRoPE, OddHeadDimIsRejected) {
  std::vector<float> cos(T * 3), sin(T * 3);
  EXPECT_THROW(rope_tables(cos.data(), sin.data(), T, 7, kTheta), std::invalid_argument);
}

}  // namespace
}  // namespace dytrain::cpu

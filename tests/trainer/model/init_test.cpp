// The parameter init streams: keyed by (seed, name), reproducible, and with the asked-for statistics.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "trainer/model/init.h"

namespace dytrain {
namespace {

TEST(Init, NormalStatistics) {
  const int64_t n = 200000;
  std::vector<float> x(n);
  fill_normal(x.data(), n, 0.02, 7, "w");
  double s = 0, s2 = 0, s4 = 0;
  for (float v : x) s += v, s2 += double(v) * v, s4 += std::pow(double(v), 4);
  const double mean = s / n, var = s2 / n - mean * mean;
  // Standard errors at n = 2e5: mean 0.02/sqrt(n) = 4.5e-5, std relative 1/sqrt(2n) = 0.16%; bounds are ~5 sigma.
  EXPECT_NEAR(mean, 0.0, 2.5e-4);
  EXPECT_NEAR(std::sqrt(var), 0.02, 0.02 * 0.008);
  // Gaussian kurtosis is 3 (a uniform would give 1.8): checks the shape, not only the moments.
  EXPECT_NEAR(s4 / n / (var * var), 3.0, 0.1);
}

TEST(Init, StreamsAreKeyedBySeedAndName) {
  std::vector<float> a(64), b(64), c(64), d(64);
  fill_normal(a.data(), 64, 1.0, 1, "model.layers.0.mlp.up_proj.weight");
  fill_normal(b.data(), 64, 1.0, 1, "model.layers.0.mlp.up_proj.weight");
  fill_normal(c.data(), 64, 1.0, 2, "model.layers.0.mlp.up_proj.weight");
  fill_normal(d.data(), 64, 1.0, 1, "model.layers.1.mlp.up_proj.weight");
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  // A prefix of a longer draw is the shorter draw: slices of one tensor agree.
  std::vector<float> e(65);
  fill_normal(e.data(), 65, 1.0, 1, "model.layers.0.mlp.up_proj.weight");
  EXPECT_TRUE(std::equal(a.begin(), a.end(), e.begin()));
}

}  // namespace
}  // namespace dytrain

// The report's statistics against values computed by hand: the power-law fit recovers a and b from exact points,
// R^2 of a hand-worked noisy case, Pearson r of a hand-worked case, and alpha_fit.yaml round-trips into the
// recommendation and the --set flags.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/trainer/sweep/sweep_test_util.h"
#include "trainer/sweep/divergence.h"
#include "trainer/sweep/fit.h"

namespace dytrain {
namespace {

TEST(PowerLawFit, RecoversExactPowerLaw) {
  const double a = 7.5, b = -0.35;
  std::vector<double> w = {256, 512, 1024, 4096}, y;
  for (double x : w) y.push_back(a * std::pow(x, b));
  const PowerLawFit f = fit_power_law(w, y);
  // Exact data: only the rounding of log/exp on doubles separates the fit from a and b.
  EXPECT_NEAR(f.a, a, 1e-10 * a);
  EXPECT_NEAR(f.b, b, 1e-12);
  EXPECT_NEAR(f.r2, 1.0, 1e-12);
}

TEST(PowerLawFit, HandWorkedRSquared) {
  // log x = {0, 1, 2}, log y = {0, 1, 3}: slope 3/2, intercept 4/3 - 3/2 = -1/6, residuals {1/6, -1/3, 1/6},
  // SS_res = 1/6, SS_tot = 14/3, so R^2 = 1 - 1/28 = 27/28.
  const double e = std::exp(1.0);
  const PowerLawFit f = fit_power_law({1.0, e, e * e}, {1.0, e, e * e * e});
  EXPECT_NEAR(f.b, 1.5, 1e-12);
  EXPECT_NEAR(f.a, std::exp(-1.0 / 6.0), 1e-12);
  EXPECT_NEAR(f.r2, 27.0 / 28.0, 1e-12);
}

TEST(PowerLawFit, ConstantBestIsAnExactFlatLaw) {
  const PowerLawFit f = fit_power_law({32, 64, 128}, {0.5, 0.5, 0.5});
  EXPECT_NEAR(f.b, 0.0, 1e-15);
  EXPECT_NEAR(f.a, 0.5, 1e-15);
  EXPECT_EQ(f.r2, 1.0);
}

TEST(PowerLawFit, RejectsUnfittableInput) {
  EXPECT_THROW(fit_power_law({64, 64}, {1.0, 0.5}), std::invalid_argument);
  EXPECT_THROW(fit_power_law({64, 128}, {1.0, 0.0}), std::invalid_argument);
}

TEST(Pearson, HandWorkedValue) {
  // dx = {-1.5, -0.5, 0.5, 1.5}, dy = {-0.5, -1.5, 1.5, 0.5}: sum dx dy = 3, sum dx^2 = sum dy^2 = 5, r = 0.6.
  EXPECT_NEAR(pearson({1, 2, 3, 4}, {2, 1, 4, 3}), 0.6, 1e-15);
  EXPECT_NEAR(pearson({1, 2, 3}, {-2, -4, -6}), -1.0, 1e-15);
  EXPECT_TRUE(std::isnan(pearson({1, 2, 3}, {5, 5, 5})));
  EXPECT_TRUE(std::isnan(pearson({1, 2}, {1, 2})));
}

TEST(AlphaFitFile, RoundTripsIntoRecommendation) {
  testing::TempDir dir;
  AlphaFit fit;
  fit.attn = {3.2, -0.21, 0.93};
  fit.ffn = {40.0, -0.75, 0.88};
  fit.widths = {256, 512, 1024};
  fit.note = "a \"quoted\" note";
  testing::write_text(dir.file("fit.yaml"), alpha_fit_yaml(fit, {2048, 4096}));
  const AlphaFit back = read_alpha_fit(dir.file("fit.yaml"));
  EXPECT_EQ(back.attn.a, fit.attn.a);  // fmt's shortest round-trip form: exact
  EXPECT_EQ(back.attn.b, fit.attn.b);
  EXPECT_EQ(back.ffn.a, fit.ffn.a);
  EXPECT_EQ(back.ffn.b, fit.ffn.b);
  EXPECT_EQ(back.ffn.r2, fit.ffn.r2);
  EXPECT_EQ(back.widths, fit.widths);
  const AlphaRecommendation r = recommend_alpha(back, 768);
  EXPECT_DOUBLE_EQ(r.alpha_attn, 3.2 * std::pow(768.0, -0.21));
  EXPECT_DOUBLE_EQ(r.alpha_ffn, 40.0 * std::pow(768.0, -0.75));
  EXPECT_EQ(recommend_flags({0.8, 0.2}),
            "--set model.alpha_attn=0.8 --set model.alpha_ffn=0.2 --set model.alpha_final=0.2");
  testing::write_text(dir.file("bad.yaml"), "attn: {a: 1}\n");
  EXPECT_THROW(read_alpha_fit(dir.file("bad.yaml")), std::runtime_error);
}

StepMetrics line(int64_t step, double loss) {
  StepMetrics m;
  m.step = step;
  m.loss = loss;
  return m;
}

TEST(DivergenceWatch, FlagsExplodingLossOnlyAfterWarmup) {
  DivergenceWatch w(2.0, 10);
  EXPECT_FALSE(w.feed(line(1, 5.5)));
  EXPECT_FALSE(w.feed(line(5, 9.0)));   // a warmup spike is tolerated
  EXPECT_FALSE(w.feed(line(12, 7.5)));  // exactly first + margin is not above it
  EXPECT_TRUE(w.feed(line(14, 7.6)));
  DivergenceWatch nan_watch(2.0, 10);
  EXPECT_TRUE(nan_watch.feed(line(1, std::nan(""))));
}

}  // namespace
}  // namespace dytrain

// The report on a synthetic sweep whose answers are known: run directories written with the trainer's own
// config and metrics writers, losses chosen so that the best alphas follow a known power law, one diverged point
// with the lowest loss of all (never best), and site series with a hand-computed correlation.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "tests/trainer/sweep/sweep_test_util.h"
#include "trainer/sweep/fit.h"
#include "trainer/sweep/report.h"
#include "trainer/sweep/report_data.h"
#include "trainer/sweep/spec.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;

// Best alphas by construction: alpha_attn = 64 / w (a = 64, b = -1), alpha_ffn = 4 / sqrt(w) (a = 4, b = -0.5).
double best_attn(int w) { return 64.0 / w; }
double best_ffn(int w) { return 4.0 / std::sqrt(double(w)); }

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_text(dir_.file("base.yaml"), testing::tiny_base_yaml());
    const Config base = load_config(dir_.file("base.yaml"));
    for (int w : {32, 64, 128})
      for (double aa : {best_attn(w), 4.0})
        for (double af : {best_ffn(w), 4.0}) {
          Config c = base;
          c.model.dim = w;
          c.model.alpha_attn = aa;
          c.model.alpha_ffn = c.model.alpha_final = af;
          // The best point ends 0.15 below the worst; train losses fall by 0.01 per logged step.
          const double end = 3.0 + (aa != best_attn(w) ? 0.1 : 0.0) + (af != best_ffn(w) ? 0.05 : 0.0);
          add_point(fmt::format("w{}_aa{}_af{}", w, aa, af), c, end, "done");
        }
    Config d = base;
    d.model.dim = 32;
    d.model.alpha_attn = d.model.alpha_ffn = d.model.alpha_final = 0.1;
    add_point("w32_diverged", d, 1.0, "diverged");
  }

  // 8 lines, losses end + 0.01 * (7 - i), val_loss at lines 4 and 7 (end + 0.03 at the last), 2-layer sites.
  void add_point(const std::string& name, const Config& c, double end, const std::string& status) {
    std::vector<StepMetrics> lines(8);
    for (int i = 0; i < 8; ++i) {
      StepMetrics& m = lines[i];
      m.step = 2 * (i + 1);
      m.loss = end + 0.01 * (7 - i);
      if (i == 3) m.val_loss = end + 0.5;
      if (i == 7) m.val_loss = end + 0.03;
      // Layer 0 attn: alpha = {1, 2, 3, 4, ...} against inv_std = {2, 1, 4, 3, ...}; the rest move together.
      const double x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[8] = {2, 1, 4, 3, 6, 5, 8, 7};
      // Saturation grows to 0.25 at the attention site and stays below it elsewhere.
      m.sites = {{0, "attn", x[i], 0, 1 / y[i], y[i], 0.25 * i / 7},
                 {0, "ffn", x[i], 0, 1 / (2 * x[i]), 2 * x[i], 0.125},
                 {-1, "final", 1.0, 0, 1.0, 1.0, 0}};
    }
    testing::write_run(dir_.path() / "sweep" / name, c, lines, status);
  }

  std::string sweep() const { return dir_.file("sweep"); }
  testing::TempDir dir_;
};

TEST_F(ReportTest, ValuesMatchTheMetrics) {
  const auto points = collect_results(sweep(), 5);
  ASSERT_EQ(points.size(), 13u);
  for (const auto& p : points) {
    if (p.name == "w32_diverged") continue;
    const double end = 3.0 + (p.alpha_attn != best_attn(p.width) ? 0.1 : 0.0) +
                       (p.alpha_ffn != best_ffn(p.width) ? 0.05 : 0.0);
    // Mean of the last 5 losses: end + 0.01 * (4 + 3 + 2 + 1 + 0) / 5. Tolerance: the 9 significant digits of
    // metrics.jsonl.
    ASSERT_TRUE(p.train_loss);
    EXPECT_NEAR(*p.train_loss, end + 0.02, 1e-8) << p.name;
    ASSERT_TRUE(p.val_loss);
    EXPECT_NEAR(*p.val_loss, end + 0.03, 1e-8) << p.name;  // the last val_loss, not the first
    EXPECT_EQ(p.steps, 16);
    EXPECT_EQ(p.max_sat, 0.25);  // the last line's most saturated site, exact in 9 digits
    EXPECT_EQ(p.status, "done");
    ASSERT_EQ(p.correlations.size(), 3u);
    // dx = {-3.5, ..., 3.5}, dy = {-2.5, -3.5, -0.5, -1.5, 1.5, 0.5, 3.5, 2.5}: sum dx dy = 38, sxx = syy = 42.
    EXPECT_NEAR(p.correlations[0].r, 38.0 / 42.0, 1e-8);
    EXPECT_NEAR(p.correlations[1].r, 1.0, 1e-8);
    EXPECT_EQ(p.correlations[0].n, 8);
    EXPECT_TRUE(std::isnan(p.correlations[2].r));  // a constant series has no correlation
  }
  EXPECT_EQ(smoothed_loss({}, 5), std::nullopt);
}

// A done point whose metrics hold a null (NaN) validation loss must not stick as the best: NaN compares false.
TEST(ReportBest, NonFiniteLossNeverWins) {
  PointResult nan_point, good, worse;
  nan_point.status = good.status = worse.status = "done";
  nan_point.val_loss = std::nan("");
  good.val_loss = 3.0;
  worse.val_loss = 4.0;
  EXPECT_EQ(best_point({&nan_point, &worse, &good}), &good);
  EXPECT_EQ(best_point({&nan_point}), nullptr);
}

TEST_F(ReportTest, BestSkipsDivergedAndFitRecoversTheLaw) {
  const auto points = collect_results(sweep(), 5);
  for (int w : {32, 64, 128}) {
    std::vector<const PointResult*> cands;
    for (const auto& p : points)
      if (p.width == w) cands.push_back(&p);
    const PointResult* b = best_point(cands);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->alpha_attn, best_attn(w));
    EXPECT_EQ(b->alpha_ffn, best_ffn(w));
  }

  ReportOptions opt;
  opt.sweep_dir = sweep();
  opt.plots = false;
  opt.out = std::tmpfile();
  ASSERT_EQ(sweep_report(opt), 0);
  std::fclose(opt.out);
  const AlphaFit fit = read_alpha_fit(sweep() + "/report/alpha_fit.yaml");
  // Written with fmt's shortest round-trip doubles: the fit is exact up to log/exp rounding.
  EXPECT_NEAR(fit.attn.a, 64.0, 1e-9);
  EXPECT_NEAR(fit.attn.b, -1.0, 1e-12);
  EXPECT_NEAR(fit.ffn.a, 4.0, 1e-9);
  EXPECT_NEAR(fit.ffn.b, -0.5, 1e-12);
  EXPECT_EQ(fit.widths, (std::vector<int>{32, 64, 128}));
  EXPECT_TRUE(fit.note.empty());

  std::ifstream md(sweep() + "/report/report.md");
  std::stringstream text;
  text << md.rdbuf();
  // The best cell of width 64 (end 3.0): smoothed train 3.02 / val 3.03, in bold; the diverged point is marked.
  EXPECT_NE(text.str().find("**3.0200 / 3.0300**"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("diverged"), std::string::npos);
  EXPECT_TRUE(fs::exists(sweep() + "/report/points.csv"));
  EXPECT_TRUE(fs::exists(sweep() + "/report/alpha_inv_std_corr.csv"));
}

TEST_F(ReportTest, AnEpsAxisSplitsThePanels) {
  Config c = load_config(dir_.file("base.yaml"));
  c.model.dim = 32;
  c.optim.eps = 0.01;
  add_point("w32_eps0.01", c, 3.0, "done");
  const auto points = collect_results(sweep(), 5);
  ASSERT_EQ(points.size(), 14u);
  for (const auto& p : points)
    EXPECT_EQ(p.panel, fmt::format("w{}_b2-{}_eps{}", p.width, format_number(p.beta2), p.eps == 0.01 ? "0.01" : "1e-08"))
        << p.name;
}

TEST_F(ReportTest, NoPointsIsAnInputError) {
  ReportOptions opt;
  opt.sweep_dir = dir_.file("empty");
  opt.plots = false;
  EXPECT_EQ(sweep_report(opt), 2);
}

}  // namespace
}  // namespace dytrain

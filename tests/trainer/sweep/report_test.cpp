// The report on a synthetic sweep whose answers are known: run directories written with the trainer's own
// config and metrics writers, losses chosen so that the best alphas follow a known power law, one diverged point
// with the lowest loss of all (never best), and site series with a hand-computed correlation; and a panel with
// repeated seeds whose means, ranges, seed spread and marked cells are known by construction.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "tests/trainer/sweep/sweep_test_util.h"
#include "trainer/sweep/fit.h"
#include "trainer/sweep/report.h"
#include "trainer/sweep/report_cells.h"
#include "trainer/sweep/report_data.h"
#include "trainer/sweep/spec.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;

// Best alphas by construction: alpha_attn = 64 / w (a = 64, b = -1), alpha_ffn = 4 / sqrt(w) (a = 4, b = -0.5).
double best_attn(int w) { return 64.0 / w; }
double best_ffn(int w) { return 4.0 / std::sqrt(double(w)); }

// 8 lines, losses end + 0.01 * (7 - i), val_loss at lines 4 and 7 (end + 0.03 at the last) unless !with_val,
// 2-layer sites. The report's final train loss (mean of the last 5) is end + 0.02, its val loss end + 0.03.
void write_point(const fs::path& dir, const Config& c, double end, const std::string& status, bool with_val = true) {
  std::vector<StepMetrics> lines(8);
  for (int i = 0; i < 8; ++i) {
    StepMetrics& m = lines[i];
    m.step = 2 * (i + 1);
    m.loss = end + 0.01 * (7 - i);
    if (with_val && i == 3) m.val_loss = end + 0.5;
    if (with_val && i == 7) m.val_loss = end + 0.03;
    // Layer 0 attn: alpha = {1, 2, 3, 4, ...} against inv_std = {2, 1, 4, 3, ...}; the rest move together.
    const double x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[8] = {2, 1, 4, 3, 6, 5, 8, 7};
    // Saturation grows to 0.25 at the attention site and stays below it elsewhere.
    m.sites = {{0, "attn", x[i], 0, 1 / y[i], y[i], 0.25 * i / 7},
               {0, "ffn", x[i], 0, 1 / (2 * x[i]), 2 * x[i], 0.125},
               {-1, "final", 1.0, 0, 1.0, 1.0, 0}};
  }
  testing::write_run(dir, c, lines, status);
}

// Runs `dytrain sweep report` (without plots) on `sweep` and returns report/report.md.
std::string report_text(const std::string& sweep) {
  ReportOptions opt;
  opt.sweep_dir = sweep;
  opt.plots = false;
  opt.out = std::tmpfile();
  EXPECT_EQ(sweep_report(opt), 0);
  std::fclose(opt.out);
  std::ifstream md(sweep + "/report/report.md");
  std::stringstream text;
  text << md.rdbuf();
  return text.str();
}

// report/cells.csv as rows of fields, keyed by "alpha_attn/alpha_ffn" of the cell, or "cal<c>" for a calibrated one.
std::map<std::string, std::map<std::string, std::string>> read_cells_csv(const std::string& sweep) {
  std::ifstream f(sweep + "/report/cells.csv");
  std::vector<std::string> header;
  std::map<std::string, std::map<std::string, std::string>> rows;
  for (std::string line; std::getline(f, line);) {
    std::vector<std::string> fields;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) fields.push_back(x);
    if (line.back() == ',') fields.push_back("");
    if (header.empty()) {
      header = fields;
      continue;
    }
    EXPECT_EQ(fields.size(), header.size()) << line;
    std::map<std::string, std::string> row;
    for (size_t i = 0; i < fields.size() && i < header.size(); ++i) row[header[i]] = fields[i];
    const std::string c = row["alpha_calib_c"];
    rows[c.empty() ? row["alpha_attn"] + "/" + row["alpha_ffn"] : "cal" + c] = row;
  }
  return rows;
}

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

  void add_point(const std::string& name, const Config& c, double end, const std::string& status) {
    write_point(dir_.path() / "sweep" / name, c, end, status);
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

// A done point whose metrics hold a null (NaN) validation loss must not stick as the best (NaN compares false), nor
// turn the mean of its cell into NaN: it is left out like a diverged seed.
TEST(ReportBest, NonFiniteLossNeverWins) {
  PointResult nan_point, good, worse, good_seed2;
  nan_point.status = good.status = worse.status = good_seed2.status = "done";
  nan_point.val_loss = std::nan("");
  good.val_loss = 3.0;
  worse.val_loss = 4.0;
  good_seed2.val_loss = std::nan("");
  nan_point.alpha_attn = 1;
  worse.alpha_attn = 2;
  good.alpha_attn = good_seed2.alpha_attn = 3;
  good_seed2.seed = 2;
  const std::vector<PointResult> points = {nan_point, worse, good, good_seed2};
  const auto cells = group_cells(points);
  ASSERT_EQ(cells.size(), 3u);
  const PanelNoise n = panel_noise({&cells[0], &cells[1], &cells[2]});
  ASSERT_NE(n.best, nullptr);
  EXPECT_EQ(n.best->alpha_attn, 3);
  EXPECT_EQ(n.best->n_finished, 1);
  EXPECT_EQ(n.best->val->mean, 3.0);
  EXPECT_EQ(panel_noise({&cells[0]}).best, nullptr);
}

TEST_F(ReportTest, BestSkipsDivergedAndFitRecoversTheLaw) {
  const auto points = collect_results(sweep(), 5);
  const auto cells = group_cells(points);
  for (int w : {32, 64, 128}) {
    std::vector<const CellResult*> cands;
    for (const auto& c : cells)
      if (c.width == w) cands.push_back(&c);
    const CellResult* b = panel_noise(cands).best;
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
  // One seed per cell: the law is exact, but nothing says the neighbours of each best are worse beyond noise, and
  // the note, carried by alpha_fit.yaml to `dytrain sweep recommend`, says so for both sites.
  for (const char* site : {"alpha_attn", "alpha_ffn"})
    EXPECT_NE(fit.note.find(std::string(site) + "'s optimum is not resolved at widths 32, 64, 128 (no seed spread "
                            "measured at widths 32, 64, 128)"),
              std::string::npos)
        << fit.note;

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

TEST_F(ReportTest, TheTitleNamesTheSweepFolderHoweverItIsWritten) {
  // "sweep/" (a shell's completion) and "sweep/." once gave "# Sweep report: " and "# Sweep report: .".
  for (const std::string& dir : {sweep(), sweep() + "/", sweep() + "/."})
    EXPECT_EQ(report_text(dir).rfind("# Sweep report: sweep\n", 0), 0u) << dir;
}

TEST_F(ReportTest, NoPointsIsAnInputError) {
  ReportOptions opt;
  opt.sweep_dir = dir_.file("empty");
  opt.plots = false;
  EXPECT_EQ(sweep_report(opt), 2);
}

// Without repeated seeds the report says plainly that it cannot judge small differences, and marks nothing.
TEST_F(ReportTest, OneSeedPerCellSaysTheSpreadIsNotMeasured) {
  const std::string md = report_text(sweep());
  const std::string sentence = "No cell has two seeds finished with a val loss: the run-to-run spread is not "
                               "measured; differences below it cannot be judged.";
  size_t n = 0;
  for (size_t at = md.find(sentence); at != std::string::npos; at = md.find(sentence, at + 1)) ++n;
  EXPECT_EQ(n, 3u) << md;  // one per panel: widths 32, 64, 128
  // No cell marked ≈ (the best-per-width table's "≈ best" column names the mark in its header and legend only).
  EXPECT_EQ(md.find(" ≈ |"), std::string::npos) << md;
  EXPECT_EQ(md.find("Within it of the best (≈)"), std::string::npos) << md;
  EXPECT_EQ(md.find("±"), std::string::npos) << md;
  const auto cells = read_cells_csv(sweep());
  const auto& best64 = cells.at(fmt::format("{}/{}", format_number(best_attn(64)), format_number(best_ffn(64))));
  EXPECT_EQ(best64.at("n_seeds"), "1");
  EXPECT_EQ(best64.at("best"), "1");
  EXPECT_EQ(best64.at("within_spread"), "0");
}

// One width-64 panel with repeated seeds; val loss per seed (train = val - 0.01), so the answers are known:
//   (1, 1)     3.00 3.04        mean 3.02, range 0.04: the best mean
//   (0.5, 1)   2.99 3.07        mean 3.03, range 0.08: the luckiest seed of all, a worse mean; the widest range,
//                               so the seed spread is 0.08 and cells up to 3.10 are within it of the best
//   (2, 1)     3.08 3.10 3.09   mean 3.09: within (+0.07)
//   (1, 0.5)   3.10 3.12        mean 3.11: just outside (+0.09)
//   (0.5, 0.5) 3.05, diverged   mean 3.05 over the one finished seed: within (+0.03); the diverged seed's loss
//                               (1.03) would pull the mean below the best's if it counted
//   (2, 0.5)   3.20             one seed, one run: its text stays as before
class SeedReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_text(dir_.file("base.yaml"), testing::tiny_base_yaml());
    add(1, 1, {3.00, 3.04});
    add(0.5, 1, {2.99, 3.07});
    add(2, 1, {3.08, 3.10, 3.09});
    add(1, 0.5, {3.10, 3.12});
    add(0.5, 0.5, {3.05, 1.03}, "diverged");
    add(2, 0.5, {3.20});
  }

  // One point per seed (seeds 1, 2, ...) with these val losses; `last_status` for the last seed.
  void add(double aa, double af, const std::vector<double>& vals, const std::string& last_status = "done") {
    Config c = load_config(dir_.file("base.yaml"));
    c.model.dim = 64;
    c.model.alpha_attn = aa;
    c.model.alpha_ffn = c.model.alpha_final = af;
    for (size_t i = 0; i < vals.size(); ++i) {
      c.train.seed = i + 1;
      write_point(dir_.path() / "sweep" / fmt::format("w64_aa{}_af{}_s{}", aa, af, i + 1), c, vals[i] - 0.03,
                  i + 1 == vals.size() ? last_status : "done");
    }
  }

  // The table row of alpha_attn `aa` in report.md.
  std::string row(const std::string& md, const std::string& aa) {
    const size_t at = md.find("\n| " + aa + " |");
    return at == std::string::npos ? "" : md.substr(at + 1, md.find('\n', at + 1) - at - 1);
  }

  std::string sweep() const { return dir_.file("sweep"); }
  testing::TempDir dir_;
};

TEST_F(SeedReportTest, SeedsOfACellShareOneTableWithMeanAndHalfRange) {
  const std::string md = report_text(sweep());
  // One table for the panel, not one per seed.
  EXPECT_NE(md.find("### w64_b2-0.95 ("), std::string::npos) << md;
  EXPECT_EQ(md.find("_s1 ("), std::string::npos) << md;
  EXPECT_EQ(md.find("### ", md.find("### ") + 1), std::string::npos) << md;
  // train mean / val mean ± half the val range (n seeds); the one-run cell keeps the plain text.
  EXPECT_NE(row(md, "1").find("| **3.0100 / 3.0200 ± 0.0200 (2 seeds)** |"), std::string::npos) << md;
  EXPECT_NE(row(md, "0.5").find("| 3.0200 / 3.0300 ± 0.0400 (2 seeds) ≈ |"), std::string::npos) << md;
  EXPECT_NE(row(md, "2").find("| 3.0800 / 3.0900 ± 0.0100 (3 seeds) ≈ |"), std::string::npos) << md;
  EXPECT_NE(row(md, "2").find("| 3.1900 / 3.2000 |"), std::string::npos) << md;
  EXPECT_NE(md.find("train / val ± h (n seeds)"), std::string::npos);  // the header says what the cells mean
}

TEST_F(SeedReportTest, MarksExactlyTheCellsWithinTheSpreadOfTheBest) {
  const std::string md = report_text(sweep());
  // Row 0.5: (0.5, 0.5) +0.03 and (0.5, 1) +0.01 within; row 1: (1, 0.5) +0.09 outside, (1, 1) the best; row 2:
  // (2, 0.5) +0.18 outside, (2, 1) +0.07 within.
  auto marks = [](const std::string& r) {
    size_t n = 0;
    for (size_t at = r.find("≈"); at != std::string::npos; at = r.find("≈", at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(marks(row(md, "0.5")), 2u) << md;
  EXPECT_EQ(marks(row(md, "1")), 0u) << md;
  EXPECT_NE(row(md, "1").find("| 3.1000 / 3.1100 ± 0.0100 (2 seeds) |"), std::string::npos) << md;
  EXPECT_EQ(marks(row(md, "2")), 1u) << md;
  EXPECT_NE(md.find("Best: alpha_attn 1, alpha_ffn 1 (val loss 3.0200, mean of 2 seeds). Seed spread 0.0800 (the "
                    "largest max - min over the 4 cells with 2-3 seeds). Within it of the best (≈), not "
                    "distinguishable from it: alpha_attn 0.5, alpha_ffn 0.5 (+0.0300); alpha_attn 0.5, alpha_ffn 1 "
                    "(+0.0100); alpha_attn 2, alpha_ffn 1 (+0.0700).\n"),
            std::string::npos)
      << md;
  EXPECT_EQ(md.find("No cell has two seeds"), std::string::npos);
}

TEST_F(SeedReportTest, ADivergedSeedIsLeftOutOfTheMeanAndNamed) {
  const std::string md = report_text(sweep());
  EXPECT_NE(row(md, "0.5").find("| 3.0400 / 3.0500 (1 seed; 1 of 2 seeds diverged) ≈ |"), std::string::npos) << md;
  const auto cell = read_cells_csv(sweep()).at("0.5/0.5");
  EXPECT_EQ(cell.at("n_seeds"), "1");
  EXPECT_EQ(cell.at("n_points"), "2");
  EXPECT_NEAR(std::stod(cell.at("val_mean")), 3.05, 1e-8);
}

// RMSNorm baselines are cells too: their seeds share one row with the same text.
TEST_F(SeedReportTest, BaselineSeedsShareOneRow) {
  Config c = load_config(dir_.file("base.yaml"));
  c.model.dim = 64;
  c.model.norm = NormKind::rmsnorm;
  for (int s : {1, 2}) {
    c.train.seed = s;
    write_point(dir_.path() / "sweep" / fmt::format("w64_rmsnorm_s{}", s), c, s == 1 ? 3.36 : 3.38, "done");
  }
  const std::string md = report_text(sweep());
  EXPECT_NE(md.find("| w64_rmsnorm_s1, w64_rmsnorm_s2 | 3.3900 / 3.4000 ± 0.0100 (2 seeds) |\n"), std::string::npos)
      << md;
}

// The best cell is the lowest mean: (0.5, 1) holds the lowest single loss (2.99) and must not win, neither its table
// nor the best-per-width table.
TEST_F(SeedReportTest, BestIsTheLowestMeanNotTheLuckiestSeed) {
  const std::string md = report_text(sweep());
  EXPECT_NE(md.find("| 64 | 1 | 1 | 0.95 | 3.0100 | 3.0200 | 2 | 0.0800 | attn 0.5-2, ffn 0.5-1 | w64_aa1_af1_s1, "
                    "w64_aa1_af1_s2 |"),
            std::string::npos)
      << md;
  const auto points = collect_results(sweep(), 5);
  const auto cells = group_cells(points);
  std::vector<const CellResult*> all;
  for (const auto& c : cells) all.push_back(&c);
  const PanelNoise n = panel_noise(all);
  ASSERT_NE(n.best, nullptr);
  EXPECT_EQ(n.best->alpha_attn, 1);
  EXPECT_EQ(n.best->alpha_ffn, 1);
  ASSERT_TRUE(n.spread);
  EXPECT_NEAR(*n.spread, 0.08, 1e-8);
}

TEST_F(SeedReportTest, CellsCsvHoldsOneRowPerCell) {
  report_text(sweep());
  const auto cells = read_cells_csv(sweep());
  ASSERT_EQ(cells.size(), 6u);
  struct Want {
    std::string key;
    int n_seeds, n_points;
    double val_mean, val_min, val_max;
    int best, within;
  };
  for (const Want& w : std::vector<Want>{{"1/1", 2, 2, 3.02, 3.00, 3.04, 1, 0},
                                         {"0.5/1", 2, 2, 3.03, 2.99, 3.07, 0, 1},
                                         {"2/1", 3, 3, 3.09, 3.08, 3.10, 0, 1},
                                         {"1/0.5", 2, 2, 3.11, 3.10, 3.12, 0, 0},
                                         {"0.5/0.5", 1, 2, 3.05, 3.05, 3.05, 0, 1},
                                         {"2/0.5", 1, 1, 3.20, 3.20, 3.20, 0, 0}}) {
    const auto& c = cells.at(w.key);
    EXPECT_EQ(c.at("panel"), "w64_b2-0.95") << w.key;
    EXPECT_EQ(c.at("width"), "64") << w.key;
    EXPECT_EQ(c.at("norm"), "dyt") << w.key;
    EXPECT_EQ(c.at("alpha_final"), c.at("alpha_ffn")) << w.key;
    EXPECT_EQ(std::stoi(c.at("n_seeds")), w.n_seeds) << w.key;
    EXPECT_EQ(std::stoi(c.at("n_points")), w.n_points) << w.key;
    // Tolerance: the 9 significant digits of metrics.jsonl.
    EXPECT_NEAR(std::stod(c.at("train_mean")), w.val_mean - 0.01, 1e-8) << w.key;
    EXPECT_NEAR(std::stod(c.at("val_mean")), w.val_mean, 1e-8) << w.key;
    EXPECT_NEAR(std::stod(c.at("val_min")), w.val_min, 1e-8) << w.key;
    EXPECT_NEAR(std::stod(c.at("val_max")), w.val_max, 1e-8) << w.key;
    EXPECT_EQ(std::stoi(c.at("best")), w.best) << w.key;
    EXPECT_EQ(std::stoi(c.at("within_spread")), w.within) << w.key;
  }
}

// A panel where one seed of one cell logged no val loss ranks by train loss: cells.csv says so in rank_loss for every
// cell of the panel and holds the train ranges the heatmap's ±h is drawn from. The val means alone cannot tell: every
// cell still has one (the old plot rule coloured such a panel by val while the report ranked it by train).
TEST_F(SeedReportTest, APanelWithASeedWithoutValRanksByTrainInCellsCsv) {
  Config c = load_config(dir_.file("base.yaml"));
  c.model.dim = 64;
  c.model.alpha_attn = 2;
  c.model.alpha_ffn = c.model.alpha_final = 0.5;
  c.train.seed = 2;
  write_point(dir_.path() / "sweep" / "w64_aa2_af0.5_s2", c, 3.30 - 0.03, "done", /*with_val=*/false);
  const std::string md = report_text(sweep());
  EXPECT_NE(md.find("Best: alpha_attn 1, alpha_ffn 1 (train loss 3.0100, mean of 2 seeds)."), std::string::npos)
      << md;
  const auto cells = read_cells_csv(sweep());
  ASSERT_EQ(cells.size(), 6u);
  for (const auto& [key, row] : cells) {
    EXPECT_EQ(row.at("rank_loss"), "train") << key;
    EXPECT_FALSE(row.at("val_mean").empty()) << key;
  }
  // (1, 1): train = val - 0.01 per seed; (2, 0.5): train 3.19 and 3.29 (the seed without val), val 3.20 alone.
  EXPECT_NEAR(std::stod(cells.at("1/1").at("train_min")), 2.99, 1e-8);
  EXPECT_NEAR(std::stod(cells.at("1/1").at("train_max")), 3.03, 1e-8);
  const auto& mixed = cells.at("2/0.5");
  EXPECT_EQ(mixed.at("n_seeds"), "2");
  EXPECT_NEAR(std::stod(mixed.at("train_min")), 3.19, 1e-8);
  EXPECT_NEAR(std::stod(mixed.at("train_max")), 3.29, 1e-8);
  EXPECT_NEAR(std::stod(mixed.at("val_min")), 3.20, 1e-8);
  EXPECT_NEAR(std::stod(mixed.at("val_max")), 3.20, 1e-8);
  // Without the seed the panel ranks by val.
  fs::remove_all(dir_.path() / "sweep" / "w64_aa2_af0.5_s2");
  report_text(sweep());
  EXPECT_EQ(read_cells_csv(sweep()).at("1/1").at("rank_loss"), "val");
}

// Seed counts and the spread come from the seeds that logged the ranking loss, not from every finished seed. Cell 1
// has two finished seeds, one with only a train loss and one with only a val loss: the panel ranks by train (a seed
// lacks val), and its train range holds one sample, which is no spread, so no spread is measured and the cell counts
// one seed.
TEST(ReportSeeds, TheSpreadNeedsTwoSeedsWithTheRankingLoss) {
  std::vector<PointResult> points(3);
  for (size_t i = 0; i < points.size(); ++i) {
    points[i].name = fmt::format("p{}", i);
    points[i].status = "done";
    points[i].norm = "dyt";
    points[i].width = 64;
    points[i].panel = "w64";
    points[i].seed = i;
  }
  points[0].alpha_attn = points[1].alpha_attn = 1;
  points[0].train_loss = 3.0;
  points[1].val_loss = 3.1;
  points[2].alpha_attn = 2;
  points[2].train_loss = 3.2;
  points[2].val_loss = 3.3;
  const auto cells = group_cells(points);
  ASSERT_EQ(cells.size(), 2u);
  EXPECT_EQ(cells[0].n_finished, 2);
  ASSERT_TRUE(cells[0].train && cells[0].val);
  EXPECT_EQ(cells[0].train->n, 1);
  EXPECT_EQ(cells[0].val->n, 1);
  const PanelNoise n = panel_noise({&cells[0], &cells[1]});
  EXPECT_FALSE(n.by_val);
  EXPECT_EQ(n.best, &cells[0]);
  EXPECT_FALSE(n.spread) << *n.spread;
  EXPECT_EQ(n.spread_cells, 0);
  EXPECT_TRUE(n.within.empty());
  ReportOptions opt;
  opt.sweep_dir = "sweep";
  const std::string md = report_markdown(points, opt);
  EXPECT_NE(md.find("| **3.0000 / 3.1000 (1 seed)** |"), std::string::npos) << md;
  EXPECT_NE(md.find("Best: alpha_attn 1, alpha_ffn 0 (train loss 3.0000). No cell has two seeds finished with a "
                    "train loss: the run-to-run spread is not measured; differences below it cannot be judged.\n"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| 64 | 1 | 0 | 0 | 3.0000 | 3.1000 | 1 | - | - | p0, p1 |"), std::string::npos) << md;
}

// Cells with several seeds of which at most one finished measure no spread either: (1, 1) one done seed and one
// diverged, (2, 1) both diverged, named as such and left out of the ranking.
TEST(ReportSeeds, AtMostOneFinishedSeedPerCellSaysTheSpreadIsNotMeasured) {
  testing::TempDir dir;
  testing::write_text(dir.file("base.yaml"), testing::tiny_base_yaml());
  Config c = load_config(dir.file("base.yaml"));
  c.model.dim = 64;
  c.model.alpha_ffn = c.model.alpha_final = 1;
  for (double aa : {1.0, 2.0})
    for (int s : {1, 2}) {
      c.model.alpha_attn = aa;
      c.train.seed = s;
      write_point(dir.path() / "sweep" / fmt::format("w64_aa{}_s{}", aa, s), c, 3.0 + aa / 10,
                  aa == 1 && s == 1 ? "done" : "diverged");
    }
  const std::string md = report_text(dir.file("sweep"));
  EXPECT_NE(md.find("| **3.1200 / 3.1300 (1 seed; 1 of 2 seeds diverged)** |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 2 | 2 of 2 seeds diverged |"), std::string::npos) << md;
  EXPECT_NE(md.find("Best: alpha_attn 1, alpha_ffn 1 (val loss 3.1300). No cell has two seeds finished with a val "
                    "loss: the run-to-run spread is not measured; differences below it cannot be judged.\n"),
            std::string::npos)
      << md;
  EXPECT_EQ(md.find("One seed per cell"), std::string::npos) << md;
  const auto cells = read_cells_csv(dir.file("sweep"));
  EXPECT_EQ(cells.at("2/1").at("n_seeds"), "0");
  EXPECT_EQ(cells.at("2/1").at("n_points"), "2");
  EXPECT_EQ(cells.at("2/1").at("val_mean"), "");
  EXPECT_EQ(cells.at("2/1").at("best"), "0");
}

// Calibrated points (alpha_init: calibrated) next to SeedReportTest's fixed-alpha panel, whose best cell (1, 1) has
// val mean 3.02 and whose seed spread is 0.08. Their configs keep the base's alpha_attn = alpha_ffn = 1, the
// alphas of that best cell: the old report counted them as seeds of it. Val losses (train = val - 0.01):
//   c 0.5   3.15         +0.13: outside the spread
//   c 1     3.05 3.07    mean 3.06, +0.04: within (≈)
//   c 2     2.94         -0.08: within, on the edge, better than the best fixed cell
//   c 4     2.90         -0.12: better by more than the spread
// Their sites start from known alphas at the first logged line and move after it: the table must show the first.
class CalibratedReportTest : public SeedReportTest {
 protected:
  void SetUp() override {
    SeedReportTest::SetUp();
    add_calibrated(0.5, 1, 3.15, {0.25, 0.75}, {1, 1});
    add_calibrated(1, 1, 3.05, {0.5, 1.5}, {2, 4});
    add_calibrated(1, 2, 3.07, {1, 2}, {3, 5});
    add_calibrated(2, 1, 2.94, {2, 2}, {6, 6});
    add_calibrated(4, 1, 2.90, {4, 4}, {8, 8});
  }

  // Two layers; attn / ffn: the alphas of layer 0 and 1 at the first line. The final site's alpha (9) and the later
  // lines' alphas (x 1.5) must not enter the chosen alpha0.
  void add_calibrated(double c, int seed, double val, const std::vector<double>& attn, const std::vector<double>& ffn) {
    Config cfg = load_config(dir_.file("base.yaml"));
    cfg.model.dim = 64;
    cfg.model.alpha_init = "calibrated";
    cfg.model.alpha_calib_c = c;
    cfg.train.seed = seed;
    std::vector<StepMetrics> lines(8);
    for (int i = 0; i < 8; ++i) {
      StepMetrics& m = lines[i];
      m.step = i == 0 ? 1 : 2 * i;
      m.loss = val - 0.01;
      if (i == 7) m.val_loss = val;
      const double moved = i == 0 ? 1.0 : 1.5;
      for (int l = 0; l < 2; ++l) {
        m.sites.push_back({l, "attn", attn[l] * moved, 0, 1, 1, 0});
        m.sites.push_back({l, "ffn", ffn[l] * moved, 0, 1, 1, 0});
      }
      m.sites.push_back({-1, "final", 9 * moved, 0, 1, 1, 0});
    }
    testing::write_run(dir_.path() / "sweep" / fmt::format("w64_cal{}_s{}", format_number(c), seed), cfg, lines,
                       "done");
  }

  // The row of the calibrated table whose c is `c`.
  std::string cal_row(const std::string& md, const std::string& c) {
    const size_t table = md.find("### Calibrated alpha0");
    const size_t at = table == std::string::npos ? table : md.find("\n| " + c + " |", table);
    return at == std::string::npos ? "" : md.substr(at + 1, md.find('\n', at + 1) - at - 1);
  }
};

TEST_F(CalibratedReportTest, CalibratedPointsStayOutOfTheFixedAlphaTableBestAndHeatmap) {
  const auto points = collect_results(sweep(), 5);
  for (const auto& p : points)
    EXPECT_EQ(p.alpha_calib_c.has_value(), p.name.find("_cal") != std::string::npos) << p.name;
  const std::string md = report_text(sweep());
  // The fixed panel's table and verdict are those without the calibrated points.
  EXPECT_NE(row(md, "1").find("| **3.0100 / 3.0200 ± 0.0200 (2 seeds)** |"), std::string::npos) << md;
  EXPECT_NE(md.find("Best: alpha_attn 1, alpha_ffn 1 (val loss 3.0200, mean of 2 seeds). Seed spread 0.0800"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| 64 | 1 | 1 | 0.95 | 3.0100 | 3.0200 | 2 | 0.0800 | attn 0.5-2, ffn 0.5-1 | w64_aa1_af1_s1, "
                    "w64_aa1_af1_s2 |"),
            std::string::npos)
      << md;
  // The heatmap's rows: the fixed cells unchanged, the calibrated ones in a panel of their own, marked by c.
  const auto cells = read_cells_csv(sweep());
  ASSERT_EQ(cells.size(), 6u + 4u);
  EXPECT_EQ(cells.at("1/1").at("n_points"), "2");
  EXPECT_NEAR(std::stod(cells.at("1/1").at("val_mean")), 3.02, 1e-8);
  EXPECT_EQ(cells.at("1/1").at("best"), "1");
  EXPECT_EQ(cells.at("1/1").at("alpha_calib_c"), "");
  for (const char* c : {"0.5", "1", "2", "4"}) {
    const auto& row = cells.at(std::string("cal") + c);
    EXPECT_EQ(row.at("panel"), "w64_b2-0.95_cal") << c;
    EXPECT_EQ(row.at("alpha_calib_c"), c);
  }
  EXPECT_EQ(cells.at("cal1").at("n_points"), "2");
}

TEST_F(CalibratedReportTest, TheCalibratedTableShowsMeansChosenAlphasAndTheDifferenceToTheBestFixedCell) {
  const std::string md = report_text(sweep());
  EXPECT_NE(md.find("### Calibrated alpha0: w64_b2-0.95_cal (beta2 0.95, eps 1e-08, lr 0.003)"), std::string::npos)
      << md;
  EXPECT_NE(md.find("the alphas at the first logged step"), std::string::npos) << md;
  EXPECT_NE(md.find("best fixed-alpha cell of this width (alpha_attn 1, alpha_ffn 1, val loss 3.0200); ≈: |Δ| "
                    "within the seed spread of that cell's table (0.0800)"),
            std::string::npos)
      << md;
  // alpha0 attn of c 1: seed 1 (0.5 + 1.5) / 2 = 1, seed 2 (1 + 2) / 2 = 1.5, mean 1.25; ffn (3 + 4) / 2 = 3.5.
  EXPECT_EQ(cal_row(md, "1"), "| 1 | 3.0500 / 3.0600 ± 0.0100 (2 seeds) | 1.25 | 3.5 | +0.0400 ≈ | w64_cal1_s1, "
                              "w64_cal1_s2 |")
      << md;
  EXPECT_EQ(cal_row(md, "0.5"), "| 0.5 | 3.1400 / 3.1500 | 0.5 | 1 | +0.1300 | w64_cal0.5_s1 |") << md;
  EXPECT_EQ(cal_row(md, "2"), "| 2 | 2.9300 / 2.9400 | 2 | 6 | -0.0800 ≈ | w64_cal2_s1 |") << md;
  EXPECT_EQ(cal_row(md, "4"), "| 4 | 2.8900 / 2.9000 | 4 | 8 | -0.1200 | w64_cal4_s1 |") << md;
  // One table: the calibrated points are no fixed-alpha panel.
  EXPECT_EQ(md.find("### w64_b2-0.95_cal"), std::string::npos) << md;
}

// The fit takes each width's best cell by mean. At every width the cell (64 / w, 4 / sqrt(w)) has the best mean
// (3.00 and 3.04) and the cell (4, 4) the luckiest seed (2.90, but 3.20 for the other): the means give
// alpha_attn = 64 w^-1 and alpha_ffn = 4 w^-0.5; the single points would give the constant 4 (b = 0).
TEST(SeedFitTest, TheFitUsesCellMeans) {
  testing::TempDir dir;
  testing::write_text(dir.file("base.yaml"), testing::tiny_base_yaml());
  Config c = load_config(dir.file("base.yaml"));
  for (int w : {32, 64, 128})
    for (bool lucky : {false, true}) {
      c.model.dim = w;
      c.model.alpha_attn = lucky ? 4.0 : best_attn(w);
      c.model.alpha_ffn = c.model.alpha_final = lucky ? 4.0 : best_ffn(w);
      const double vals[2] = {lucky ? 2.90 : 3.00, lucky ? 3.20 : 3.04};
      for (int s = 0; s < 2; ++s) {
        c.train.seed = s + 1;
        write_point(dir.path() / "sweep" / fmt::format("w{}_{}_s{}", w, lucky ? "lucky" : "best", s + 1), c,
                    vals[s] - 0.03, "done");
      }
    }
  report_text(dir.file("sweep"));
  const AlphaFit fit = read_alpha_fit(dir.file("sweep") + "/report/alpha_fit.yaml");
  EXPECT_NEAR(fit.attn.a, 64.0, 1e-9);
  EXPECT_NEAR(fit.attn.b, -1.0, 1e-12);
  EXPECT_NEAR(fit.ffn.a, 4.0, 1e-9);
  EXPECT_NEAR(fit.ffn.b, -0.5, 1e-12);
}

}  // namespace
}  // namespace dytrain

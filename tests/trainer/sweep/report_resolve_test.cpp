// Whether the report says when a width's best alpha0 is not resolved by the seed spread: the "≈ best" column of the
// best-per-width table (the alphas of the cells within the spread of the best) and the fit's note. Points are built
// in memory, so every loss, and with it every range and note, is known by construction.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <fmt/format.h>

#include "trainer/sweep/report.h"
#include "trainer/sweep/report_data.h"
#include "trainer/sweep/spec.h"

namespace dytrain {
namespace {

PointResult point(int width, double aa, double af, int seed, double val) {
  PointResult p;
  p.name = fmt::format("w{}_aa{}_af{}_s{}", width, format_number(aa), format_number(af), seed);
  p.panel = fmt::format("w{}", width);
  p.width = width;
  p.norm = "dyt";
  p.status = "done";
  p.seed = seed;
  p.alpha_attn = aa;
  p.alpha_ffn = p.alpha_final = af;
  p.train_loss = val - 0.01;
  p.val_loss = val;
  return p;
}

// One width's panel, alpha_attn {0.0625, 0.125, 0.25, 0.5, 2} x alpha_ffn {0.5, 2}, val losses:
//   (best_attn, 0.5)       two seeds 2.99 and 3.01 (mean 3.00, range 0.02: the seed spread), or one seed 3.00
//   other attn <= 0.5, 0.5 flat: 3.005, 3.010, 3.015, within 0.02 of the best; else 3.1, beyond it
//   (2, 0.5)               3.3
//   every attn, ffn 2      3.5: alpha_ffn 0.5 leads by more than any spread
// Real sweeps at widths 64 and 128 looked like the flat case: the best alpha_attn moved between neighbours by noise.
void add_panel(std::vector<PointResult>* points, int width, double best_attn, bool flat, int seeds) {
  const std::vector<double> attn = {0.0625, 0.125, 0.25, 0.5, 2};
  double near = 3.005;
  for (double aa : attn) {
    if (aa == best_attn) {
      if (seeds == 2) {
        points->push_back(point(width, aa, 0.5, 1, 2.99));
        points->push_back(point(width, aa, 0.5, 2, 3.01));
      } else {
        points->push_back(point(width, aa, 0.5, 1, 3.00));
      }
    } else if (aa == 2) {
      points->push_back(point(width, aa, 0.5, 1, 3.3));
    } else {
      points->push_back(point(width, aa, 0.5, 1, flat ? near : 3.1));
      near += 0.005;
    }
    points->push_back(point(width, aa, 2, 1, 3.5));
  }
}

std::string report(const std::vector<PointResult>& points) {
  ReportOptions opt;
  opt.sweep_dir = "sweep";
  return report_markdown(points, opt);
}

// The row of width `w` in the best-per-width table.
std::string best_row(const std::string& md, int w) {
  const size_t table = md.find("## Best alpha0 per width");
  const size_t at = table == std::string::npos ? table : md.find(fmt::format("\n| {} |", w), table);
  return at == std::string::npos ? "" : md.substr(at + 1, md.find('\n', at + 1) - at - 1);
}

// The fit's note as the report prints it ("" when there is none).
std::string fit_note(const std::string& md) {
  const size_t at = md.find("\nNote: ");
  return at == std::string::npos ? "" : md.substr(at + 7, md.find(".\n", at) - at - 7);
}

const char* const kAdvice = ": its fitted exponent is not a measurement; repeat seeds there, or train longer, to "
                            "separate those cells";

TEST(ReportResolve, AFlatAxisShowsItsRangeAndTheFitSaysTheOptimumIsNotResolved) {
  std::vector<PointResult> points;
  add_panel(&points, 64, 0.125, /*flat=*/true, 2);
  add_panel(&points, 128, 0.25, /*flat=*/true, 2);
  add_panel(&points, 256, 0.25, /*flat=*/false, 2);
  const std::string md = report(points);
  EXPECT_NE(best_row(md, 64).find("| 0.0200 | attn 0.0625-0.5, ffn 0.5 |"), std::string::npos) << md;
  EXPECT_NE(best_row(md, 128).find("| 0.0200 | attn 0.0625-0.5, ffn 0.5 |"), std::string::npos) << md;
  EXPECT_NE(best_row(md, 256).find("| 0.0200 | attn 0.25, ffn 0.5 |"), std::string::npos) << md;
  // alpha_ffn is resolved everywhere (every cell within the spread has ffn 0.5): the note is about alpha_attn only.
  EXPECT_EQ(fit_note(md), std::string("alpha_attn's optimum is not resolved at widths 64, 128 (within the seed "
                                      "spread of the best: 0.0625 to 0.5 at width 64, 0.0625 to 0.5 at width 128)") +
                              kAdvice)
      << md;
}

TEST(ReportResolve, NeighboursFartherThanTheSpreadLeaveTheSingleValueAndNoNote) {
  std::vector<PointResult> points;
  add_panel(&points, 64, 0.5, /*flat=*/false, 2);
  add_panel(&points, 128, 0.25, /*flat=*/false, 2);
  add_panel(&points, 256, 0.125, /*flat=*/false, 2);
  const std::string md = report(points);
  EXPECT_NE(best_row(md, 64).find("| attn 0.5, ffn 0.5 |"), std::string::npos) << md;
  EXPECT_NE(best_row(md, 128).find("| attn 0.25, ffn 0.5 |"), std::string::npos) << md;
  EXPECT_NE(best_row(md, 256).find("| attn 0.125, ffn 0.5 |"), std::string::npos) << md;
  EXPECT_EQ(fit_note(md), "") << md;
}

// Widths without a second seed anywhere measure no spread: "-" in the table, and both sites named for them.
TEST(ReportResolve, AnUnmeasuredSpreadShowsADashAndTheNoteNamesBothSites) {
  std::vector<PointResult> points;
  add_panel(&points, 64, 0.125, /*flat=*/true, 2);
  add_panel(&points, 128, 0.25, /*flat=*/false, 1);
  add_panel(&points, 256, 0.25, /*flat=*/false, 1);
  const std::string md = report(points);
  EXPECT_NE(best_row(md, 64).find("| attn 0.0625-0.5, ffn 0.5 |"), std::string::npos) << md;
  EXPECT_NE(best_row(md, 128).find("| 1 | - | - |"), std::string::npos) << md;  // seeds, spread, ≈ best
  EXPECT_NE(best_row(md, 256).find("| 1 | - | - |"), std::string::npos) << md;
  EXPECT_EQ(fit_note(md), std::string("alpha_attn's optimum is not resolved at widths 64, 128, 256 (within the seed "
                                      "spread of the best: 0.0625 to 0.5 at width 64; no seed spread measured at "
                                      "widths 128, 256)") +
                              kAdvice + "; alpha_ffn's optimum is not resolved at widths 128, 256 (no seed spread "
                                        "measured at widths 128, 256)" + kAdvice)
      << md;
}

// The two-widths caveat stays, first, joined to the new one.
TEST(ReportResolve, TwoWidthsKeepTheirNote) {
  std::vector<PointResult> points;
  add_panel(&points, 64, 0.125, /*flat=*/true, 2);
  add_panel(&points, 128, 0.25, /*flat=*/false, 2);
  const std::string md = report(points);
  EXPECT_EQ(fit_note(md), std::string("two widths: any power law passes through both points, so R^2 = 1 says "
                                      "nothing; sweep three or more widths for a fit that can be judged; alpha_attn's "
                                      "optimum is not resolved at width 64 (within the seed spread of the best: "
                                      "0.0625 to 0.5 at width 64)") +
                              kAdvice)
      << md;
}

}  // namespace
}  // namespace dytrain

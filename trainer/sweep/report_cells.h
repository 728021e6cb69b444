// The seeds of a sweep report: points that share every axis but the seed form one cell, and a panel's seed spread
// says how far apart two cells must be before the sweep can tell them apart.
//
// Design decisions:
// - A seed counts in its cell when it finished: status done and every loss it logged finite. Diverged, failed and
//   unfinished seeds are left out of the means (a stopped run's loss is no sample of the final loss) and counted
//   by status, so the report can say "1 of 3 seeds diverged".
// - A cell's figures are the mean, min and max over its finished seeds; the table shows mean +- half the range, so
//   mean +- h spans the seeds' [min, max]. With two or three seeds a range is all there is: a standard deviation of
//   two values is the range over sqrt(2) and claims a precision two samples do not have.
// - The seed spread of a panel is the largest max - min of the ranking loss over its cells with two or more
//   finished seeds that logged it (a range of one sample is no spread): the run-to-run noise, measured where the
//   sweep measured it and taken at its worst, since a sweep that repeats seeds usually does so at a few cells only.
//   A cell whose mean lies within that spread of the best cell's mean cannot be told apart from the best, so the
//   alphas of those cells bound where the sweep puts the optimum: a flat axis is not a located optimum.
// - Cells rank by validation loss when every finished seed of the candidates logged one, else by train loss, as
//   single points did before seeds were aggregated. Every seed count the report shows is the n of the ranking
//   loss's range: the seeds its mean and spread hold, not a finished seed that logged only the other loss.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "trainer/sweep/report_data.h"

namespace dytrain {

struct LossRange {
  double mean = 0, min = 0, max = 0;
  int n = 0;  // the seeds the range is taken over
};

struct CellResult {
  std::string panel;
  int width = 0;
  std::string norm;
  double alpha_attn = 0, alpha_ffn = 0, alpha_final = 0, beta2 = 0, eps = 0, lr = 0;
  std::optional<double> alpha_calib_c;     // set: a calibrated cell (report_data.h)
  // The alpha0 its seeds started from, averaged over the seeds that logged sites, whether they finished or not:
  // a calibrated cell's chosen alphas (for a fixed cell, its alpha_attn / alpha_ffn).
  std::optional<double> alpha0_attn, alpha0_ffn;
  std::vector<const PointResult*> points;  // every seed, in the order of the points given to group_cells
  int n_finished = 0;                      // the seeds the ranges below are taken over
  std::optional<LossRange> train, val;     // over the finished seeds that logged the loss
};

// Whether a point counts in its cell's figures (see the header comment).
bool finished(const PointResult& p);

// The cells of `points`, in the order their first point appears. The cells point into `points`: keep it alive.
std::vector<CellResult> group_cells(const std::vector<PointResult>& points);

bool rank_by_val(const std::vector<const CellResult*>& cells);
// The range of the loss that ranks the cell; nullopt when no seed finished with that loss.
const std::optional<LossRange>& rank_range(const CellResult& c, bool by_val);

// The best of `cells` by mean ranking loss (nullptr when no cell has a finished seed), the panel's seed spread and
// the other cells within it of the best.
struct PanelNoise {
  bool by_val = true;
  const CellResult* best = nullptr;
  std::optional<double> spread;        // nullopt: no cell has two seeds with the ranking loss, the noise is unmeasured
  int spread_cells = 0;                // cells whose ranking range holds two or more seeds
  int min_seeds = 0, max_seeds = 0;    // the n of those ranges, fewest and most
  std::vector<const CellResult*> within;  // cells other than the best whose mean is within the spread of its mean
};
PanelNoise panel_noise(const std::vector<const CellResult*>& cells);

// Whether two mean losses `diff` apart (either sign) lie within a seed spread: the rule of PanelNoise::within.
bool within_spread(double diff, double spread);

// The alpha_attn and alpha_ffn values, min to max, of the cells a panel cannot tell from its best: the best and the
// cells of PanelNoise::within. A site whose min and max differ has no optimum the sweep can place more precisely than
// that range. nullopt when the panel has no best or its seed spread is unmeasured: then no cell can be told apart.
struct AlphaSpan {
  double attn_min = 0, attn_max = 0, ffn_min = 0, ffn_max = 0;
};
std::optional<AlphaSpan> alphas_near_best(const PanelNoise& n);

}  // namespace dytrain

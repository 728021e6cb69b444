// `dytrain sweep report <sweep>`: writes <sweep>/report/ and prints report.md.
//   report.md               per panel an alpha_attn x alpha_ffn table of train / val loss (several seeds of a cell:
//                           their means ± half their range), the best cell, the seed spread and the cells within it
//                           of the best (marked ≈), per width a table of the calibrated cells (model.alpha_init:
//                           calibrated; per c the losses, the alpha0 chosen at attention and FFN sites, the
//                           difference to the width's best fixed-alpha cell, ≈ within that cell's seed spread), the
//                           best alphas per width and beta2 (fixed-alpha cells only), the power-law fit, and the
//                           alpha-inv_std correlation of every run
//   points.csv              one row per point: axes, status, losses (full precision, for scripts and the plots),
//                           alpha_calib_c last (empty for a fixed-alpha point)
//   cells.csv               one row per cell (the seeds of one point of the grid): panel, axes, n_seeds (the
//                           finished seeds that logged the rank_loss: the ones its mean and range hold), n_points,
//                           train_mean, val_mean, train_min, train_max, val_min, val_max (over the finished seeds
//                           that logged that loss), rank_loss (val or train: the loss that ranks the cell's panel,
//                           the same for every cell of it; the heatmap colours by it), best (0/1), within_spread
//                           (0/1: not the best, mean within the panel's seed spread of the best's), alpha_calib_c
//                           (empty for a fixed-alpha cell; the calibrated cells of a panel form a panel <panel>_cal
//                           of their own, so best / within_spread there compare the c values with each other)
//   alpha_inv_std_corr.csv  Pearson r of alpha with inv_std per run, layer and site
//   alpha_fit.yaml          the fit, read by `dytrain sweep recommend` (only with two or more widths)
//   heatmap_<panel>.png (from cells.csv; fixed-alpha panels), alpha_inv_std/<point>.png   when python3 with
//                           matplotlib is found (else a warning)
// The fit uses, per width, the best fixed-alpha cell (by mean over its seeds) over every panel of that width.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "trainer/sweep/report_data.h"

namespace dytrain {

struct ReportOptions {
  std::string sweep_dir;
  int smooth_k = 5;                                                // final train loss = mean of the last k losses
  std::vector<int> recommend_widths = {256, 512, 1024, 2048, 4096};  // swept ones are left out
  bool plots = true;
  std::FILE* out = stdout;                                         // report.md is printed here too
};

// Returns the exit code (0, or 2 when the directory holds no sweep; the message is printed).
int sweep_report(const ReportOptions& opt);

// The report.md text for `points` (tested on its own); the seeds of a cell are aggregated here (report_cells.h).
std::string report_markdown(const std::vector<PointResult>& points, const ReportOptions& opt);

}  // namespace dytrain

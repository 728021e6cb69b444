// The figures of a sweep report, gathered from the sweep directory alone: every sub-directory with a config.yaml is
// a point; its axis values come from that resolved config (not from the spec, which may have changed since), its
// losses from metrics.jsonl, its fate from status.yaml.
//
// Design decisions:
// - Final train loss = mean of the last k logged losses (default k = 5): one logged step is noisy, a mean over the
//   end of the run is what a loss curve shows. Validation loss = the last val_loss logged.
// - Points are grouped into panels: all points that share every axis but alpha_attn, alpha_ffn and the seed (width,
//   beta2, eps, lr, and alpha_final when it is not tied to alpha_ffn). A panel is one alpha_attn x alpha_ffn table
//   and one heatmap; the seeds of one alpha pair form one cell of it (report_cells.h), so repeated seeds show as
//   noise on a cell, not as another table.
// - A calibrated point (model.alpha_init: calibrated on a DyT model) chose its own alpha0 per site, so its config's
//   alpha_attn / alpha_ffn mean nothing: it carries its c instead, and its panel is the fixed-alpha panel's key with
//   "_cal" appended, so it never lands in an alpha_attn x alpha_ffn table. The alphas it chose are read from the
//   first metrics line with sites: step 1 is always logged, and its forward ran with alpha0 itself.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "trainer/train/metrics.h"

namespace dytrain {

struct SiteCorrelation {
  int layer = 0;          // -1: final
  std::string site;       // attn | ffn | final
  double r = 0.0;         // Pearson r of alpha with inv_std over the logged steps; NaN when undefined
  int n = 0;              // logged steps used
};

struct PointResult {
  std::string name, status;       // status: done | diverged | failed | interrupted | running | unknown
  int width = 0;
  double alpha_attn = 0, alpha_ffn = 0, alpha_final = 0, beta2 = 0, eps = 0, lr = 0;
  std::string norm;
  std::optional<double> alpha_calib_c;  // set for a calibrated point (see the header comment)
  std::optional<double> alpha0_attn, alpha0_ffn;  // mean alpha over attention / FFN sites, first line with sites
  uint64_t seed = 0;
  int64_t steps = 0, max_steps = 0;  // last logged step, configured steps
  std::optional<double> train_loss;  // smoothed
  std::optional<double> val_loss;    // last logged
  std::optional<double> max_sat;     // the most saturated DyT site at the last log step with site metrics
  std::string panel;                 // group key, e.g. w64_b2-0.95
  std::vector<SiteCorrelation> correlations;
};

// Mean of the last k losses (all of them when fewer); nullopt when there are none.
std::optional<double> smoothed_loss(const std::vector<StepMetrics>& lines, int k);

// Pearson r of alpha with inv_std per (layer, site) over the lines that carry sites.
std::vector<SiteCorrelation> alpha_inv_std_correlations(const std::vector<StepMetrics>& lines);

// Every point under sweep_dir, sorted by (width, norm, panel, alpha_calib_c, alpha_attn, alpha_ffn). Throws
// std::runtime_error naming the directory when it holds no point.
std::vector<PointResult> collect_results(const std::string& sweep_dir, int smooth_k);

}  // namespace dytrain

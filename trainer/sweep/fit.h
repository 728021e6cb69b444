// The statistics of a sweep report: the power law alpha0(width) = a * width^b per DyT site, its R^2, the Pearson
// correlation of alpha with inv_std, and the alpha_fit.yaml file that lets a run take its alpha0 from a fit.
//
// Design decisions:
// - The fit is ordinary least squares of log(alpha) on log(width): a power law is a line in log-log, the best
//   alphas of a sweep lie on a multiplicative grid, and R^2 is reported in that same log space.
// - With two widths any power law fits exactly (R^2 = 1 says nothing); the report says so, and with fewer than two
//   distinct widths there is nothing to fit.
#pragma once
#include <string>
#include <vector>

namespace dytrain {

struct PowerLawFit {
  double a = 0.0, b = 0.0;  // y = a * x^b
  double r2 = 0.0;          // in log space; 1 when the points are fitted exactly
};

// Least squares in log-log. Throws std::invalid_argument for fewer than two distinct x or any value <= 0.
PowerLawFit fit_power_law(const std::vector<double>& x, const std::vector<double>& y);

// Pearson correlation; NaN when fewer than 3 pairs or either series is constant (undefined).
double pearson(const std::vector<double>& x, const std::vector<double>& y);

struct AlphaFit {
  PowerLawFit attn, ffn;     // ffn also sets alpha_final (tied, as in the paper)
  std::vector<int> widths;   // the swept widths the fit used
  std::string note;          // caveat on the fit's meaning, empty when none
};

struct AlphaRecommendation {
  double alpha_attn = 0.0, alpha_ffn = 0.0;
};

AlphaRecommendation recommend_alpha(const AlphaFit& fit, int width);

// alpha_fit.yaml: {attn: {a, b, r2}, ffn: {a, b, r2}, widths: [...], note, recommend: {width: {attn, ffn}}} for the
// given widths. read_alpha_fit reads back what alpha_fit_yaml writes; it throws std::runtime_error naming the file
// and the key when one is missing.
std::string alpha_fit_yaml(const AlphaFit& fit, const std::vector<int>& recommend_widths);
AlphaFit read_alpha_fit(const std::string& path);

// The `--set` flags that give a run the recommended alpha0 (alpha_final tied to alpha_ffn).
std::string recommend_flags(const AlphaRecommendation& r);

}  // namespace dytrain

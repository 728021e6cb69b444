#include "trainer/sweep/report_data.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <stdexcept>
#include <tuple>

#include <fmt/format.h>

#include "trainer/config/config.h"
#include "trainer/sweep/fit.h"
#include "trainer/sweep/spec.h"
#include "trainer/sweep/status.h"

namespace dytrain {
namespace {

namespace fs = std::filesystem;

// Mean alpha over the sites of one kind; nullopt when there are none.
std::optional<double> mean_alpha(const std::vector<SiteMetrics>& sites, const std::string& kind) {
  double sum = 0;
  int n = 0;
  for (const SiteMetrics& s : sites)
    if (s.site == kind) {
      sum += s.alpha;
      ++n;
    }
  return n ? std::optional(sum / n) : std::nullopt;
}

PointResult read_point(const fs::path& dir, int smooth_k) {
  PointResult p;
  p.name = dir.filename().string();
  const Config c = load_config((dir / "config.yaml").string());
  p.width = c.model.dim;
  p.norm = to_string(c.model.norm);
  p.alpha_attn = c.model.alpha_attn;
  p.alpha_ffn = c.model.alpha_ffn;
  p.alpha_final = c.model.alpha_final;
  p.beta2 = c.optim.beta2;
  p.eps = c.optim.eps;
  p.lr = c.optim.lr;
  // The trainer calibrates DyT sites only: an RMSNorm run with alpha_init calibrated is a plain baseline.
  if (c.model.alpha_init == "calibrated" && c.model.norm == NormKind::dyt) p.alpha_calib_c = c.model.alpha_calib_c;
  p.seed = c.train.seed;
  p.max_steps = c.train.max_steps;
  const auto lines = read_metrics((dir / "metrics.jsonl").string());
  if (!lines.empty()) p.steps = lines.back().step;
  p.train_loss = smoothed_loss(lines, smooth_k);
  for (auto it = lines.rbegin(); it != lines.rend() && !p.val_loss; ++it) p.val_loss = it->val_loss;
  for (auto it = lines.rbegin(); it != lines.rend() && !p.max_sat; ++it)
    for (const SiteMetrics& s : it->sites) p.max_sat = std::max(p.max_sat.value_or(0.0), s.sat);
  const auto first = std::find_if(lines.begin(), lines.end(), [](const StepMetrics& m) { return !m.sites.empty(); });
  if (first != lines.end()) {
    p.alpha0_attn = mean_alpha(first->sites, "attn");
    p.alpha0_ffn = mean_alpha(first->sites, "ffn");
  }
  p.correlations = alpha_inv_std_correlations(lines);
  const auto status = read_point_status(dir.string());
  p.status = status ? status->status : "unknown";
  return p;
}

// Panel keys: the axes that vary across the sweep, besides alpha_attn, alpha_ffn and the seed; the calibrated points
// of a panel form one panel of their own, whatever their c.
void assign_panels(std::vector<PointResult>* points) {
  std::set<double> epss, lrs;
  bool untied_final = false;
  for (const auto& p : *points) {
    epss.insert(p.eps);
    lrs.insert(p.lr);
    untied_final |= p.norm == "dyt" && !p.alpha_calib_c && p.alpha_final != p.alpha_ffn;
  }
  for (auto& p : *points) {
    p.panel = fmt::format("w{}", p.width);
    if (p.norm != "dyt") p.panel += "_" + p.norm;
    p.panel += "_b2-" + format_number(p.beta2);
    if (epss.size() > 1) p.panel += "_eps" + format_number(p.eps);
    if (lrs.size() > 1) p.panel += "_lr" + format_number(p.lr);
    if (p.alpha_calib_c) p.panel += "_cal";
    else if (untied_final && p.norm == "dyt") p.panel += "_afin" + format_number(p.alpha_final);
  }
}

}  // namespace

std::optional<double> smoothed_loss(const std::vector<StepMetrics>& lines, int k) {
  if (lines.empty()) return std::nullopt;
  const size_t n = std::min(lines.size(), size_t(std::max(k, 1)));
  double sum = 0;
  for (size_t i = lines.size() - n; i < lines.size(); ++i) sum += lines[i].loss;
  return sum / double(n);
}

std::vector<SiteCorrelation> alpha_inv_std_correlations(const std::vector<StepMetrics>& lines) {
  // (layer, site) -> the alpha and inv_std series, in site order of first appearance.
  std::vector<std::pair<int, std::string>> order;
  std::map<std::pair<int, std::string>, std::pair<std::vector<double>, std::vector<double>>> series;
  for (const auto& m : lines)
    for (const auto& s : m.sites) {
      const auto key = std::make_pair(s.layer, s.site);
      if (!series.count(key)) order.push_back(key);
      series[key].first.push_back(s.alpha);
      series[key].second.push_back(s.inv_std);
    }
  std::vector<SiteCorrelation> out;
  for (const auto& key : order) {
    const auto& [alpha, inv_std] = series[key];
    out.push_back({key.first, key.second, pearson(alpha, inv_std), int(alpha.size())});
  }
  return out;
}

std::vector<PointResult> collect_results(const std::string& sweep_dir, int smooth_k) {
  std::vector<PointResult> points;
  if (fs::is_directory(sweep_dir))
    for (const auto& e : fs::directory_iterator(sweep_dir))
      if (e.is_directory() && fs::is_regular_file(e.path() / "config.yaml"))
        points.push_back(read_point(e.path(), smooth_k));
  if (points.empty())
    throw std::runtime_error(fmt::format("{}: no point directories (sub-directories with a config.yaml); is this the "
                                         "directory `dytrain sweep run` wrote?",
                                         sweep_dir));
  assign_panels(&points);
  std::sort(points.begin(), points.end(), [](const PointResult& a, const PointResult& b) {
    return std::tie(a.width, a.norm, a.panel, a.alpha_calib_c, a.alpha_attn, a.alpha_ffn, a.name) <
           std::tie(b.width, b.norm, b.panel, b.alpha_calib_c, b.alpha_attn, b.alpha_ffn, b.name);
  });
  return points;
}

}  // namespace dytrain

#include "trainer/sweep/fit.h"

#include <cmath>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include "trainer/config/yaml_keys.h"

namespace dytrain {

PowerLawFit fit_power_law(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.size() != y.size()) throw std::invalid_argument("fit_power_law: x and y differ in length");
  if (std::set<double>(x.begin(), x.end()).size() < 2)
    throw std::invalid_argument("fit_power_law: needs at least two distinct widths");
  const size_t n = x.size();
  double mx = 0, my = 0;
  std::vector<double> lx(n), ly(n);
  for (size_t i = 0; i < n; ++i) {
    if (!(x[i] > 0) || !(y[i] > 0)) throw std::invalid_argument("fit_power_law: values must be positive");
    lx[i] = std::log(x[i]);
    ly[i] = std::log(y[i]);
    mx += lx[i] / n;
    my += ly[i] / n;
  }
  double sxx = 0, sxy = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) {
    sxx += (lx[i] - mx) * (lx[i] - mx);
    sxy += (lx[i] - mx) * (ly[i] - my);
    syy += (ly[i] - my) * (ly[i] - my);
  }
  PowerLawFit f;
  f.b = sxy / sxx;
  f.a = std::exp(my - f.b * mx);
  double ss_res = 0;
  for (size_t i = 0; i < n; ++i) {
    const double r = ly[i] - (my + f.b * (lx[i] - mx));
    ss_res += r * r;
  }
  // A constant y (every width has the same best alpha) is fitted exactly by b = 0: R^2 is 1, not 0/0.
  f.r2 = syy > 0 ? 1.0 - ss_res / syy : 1.0;
  return f;
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = x.size();
  if (n != y.size() || n < 3) return std::numeric_limits<double>::quiet_NaN();
  double mx = 0, my = 0;
  for (size_t i = 0; i < n; ++i) {
    mx += x[i] / n;
    my += y[i] / n;
  }
  double sxx = 0, syy = 0, sxy = 0;
  for (size_t i = 0; i < n; ++i) {
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
    sxy += (x[i] - mx) * (y[i] - my);
  }
  if (!(sxx > 0) || !(syy > 0)) return std::numeric_limits<double>::quiet_NaN();
  return sxy / std::sqrt(sxx * syy);
}

AlphaRecommendation recommend_alpha(const AlphaFit& fit, int width) {
  return {fit.attn.a * std::pow(double(width), fit.attn.b), fit.ffn.a * std::pow(double(width), fit.ffn.b)};
}

std::string alpha_fit_yaml(const AlphaFit& fit, const std::vector<int>& recommend_widths) {
  std::ostringstream s;
  auto law = [&](const char* name, const PowerLawFit& f) {
    s << fmt::format("{}: {{a: {}, b: {}, r2: {}}}\n", name, f.a, f.b, f.r2);
  };
  s << "# alpha0(width) = a * width^b per DyT site (ffn also sets alpha_final), fitted by dytrain sweep report.\n";
  law("attn", fit.attn);
  law("ffn", fit.ffn);
  s << "widths: [" << fmt::format("{}", fmt::join(fit.widths, ", ")) << "]\n";
  std::string note;
  for (char c : fit.note) note += c == '"' ? '\'' : c;
  s << "note: \"" << note << "\"\n";
  s << "recommend:\n";
  for (int w : recommend_widths) {
    const AlphaRecommendation r = recommend_alpha(fit, w);
    s << fmt::format("  {}: {{attn: {:.4g}, ffn: {:.4g}}}\n", w, r.alpha_attn, r.alpha_ffn);
  }
  return s.str();
}

AlphaFit read_alpha_fit(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(fmt::format("{}: cannot read the alpha fit ({}); it is written by dytrain sweep report "
                                         "as <sweep>/report/alpha_fit.yaml",
                                         path, e.what()));
  }
  require_unique_keys(root, path);
  auto law = [&](const char* name) {
    const YAML::Node n = root[name];
    if (!n || !n["a"] || !n["b"])
      throw std::runtime_error(fmt::format("{}: {}: missing, or without a and b; is this an alpha_fit.yaml?", path,
                                           name));
    PowerLawFit f;
    f.a = n["a"].as<double>();
    f.b = n["b"].as<double>();
    f.r2 = n["r2"] ? n["r2"].as<double>() : 0.0;
    // alpha0 = a * width^b: a nan, an inf or a <= 0 would be printed as --set flags that every run then rejects.
    if (!(f.a > 0) || !std::isfinite(f.a) || !std::isfinite(f.b))
      throw std::runtime_error(fmt::format("{}: {}: a = {} and b = {} must be finite, with a > 0; rerun dytrain sweep "
                                           "report to write the fit again",
                                           path, name, f.a, f.b));
    return f;
  };
  AlphaFit fit;
  fit.attn = law("attn");
  fit.ffn = law("ffn");
  if (root["widths"]) fit.widths = root["widths"].as<std::vector<int>>();
  if (root["note"]) fit.note = root["note"].as<std::string>();
  return fit;
}

std::string recommend_flags(const AlphaRecommendation& r) {
  return fmt::format("--set model.alpha_attn={:.4g} --set model.alpha_ffn={:.4g} --set model.alpha_final={:.4g}",
                     r.alpha_attn, r.alpha_ffn, r.alpha_ffn);
}

}  // namespace dytrain

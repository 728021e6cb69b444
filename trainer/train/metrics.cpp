#include "trainer/train/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>

namespace dytrain {

std::vector<SiteMetrics> site_metrics(const std::vector<cpu::SiteMoments>& moments, const std::vector<float>& alphas) {
  const int n_layers = int(moments.size() - 1) / 2;
  std::vector<SiteMetrics> out(moments.size());
  for (size_t s = 0; s < moments.size(); ++s) {
    const cpu::SiteMoments& m = moments[s];
    SiteMetrics& r = out[s];
    const bool final = int(s) == 2 * n_layers;
    r.layer = final ? -1 : int(s) / 2;
    r.site = final ? "final" : (s % 2 == 0 ? "attn" : "ffn");
    r.alpha = alphas[s];
    if (m.count > 0) {
      r.act_mean = m.sum / m.count;
      // E[x^2] - E[x]^2 in double; clamp the rounding that can make it slightly negative for constant inputs.
      r.act_std = std::sqrt(std::max(0.0, m.sum_sq / m.count - r.act_mean * r.act_mean));
      r.inv_std = r.act_std > 0 ? 1.0 / r.act_std : 0.0;
      r.sat = m.saturated / m.count;
    }
  }
  return out;
}

std::string to_json_line(const StepMetrics& m) {
  // {:.9g} round-trips fp32 values and keeps lines short.
  std::string s = fmt::format("{{\"step\":{},\"loss\":{:.9g}", m.step, m.loss);
  if (m.val_loss) s += fmt::format(",\"val_loss\":{:.9g}", *m.val_loss);
  s += fmt::format(
      ",\"lr\":{:.9g},\"grad_norm\":{:.9g},\"tokens\":{},\"step_ms\":{:.4g},\"tok_s\":{:.6g},\"elapsed_s\":{:.6g},"
      "\"eta_s\":{:.6g},\"embed_scale\":{:.9g},\"sites\":[",
      m.lr, m.grad_norm, m.tokens, m.step_ms, m.tok_s, m.elapsed_s, m.eta_s, m.embed_scale);
  for (size_t i = 0; i < m.sites.size(); ++i) {
    const SiteMetrics& r = m.sites[i];
    s += fmt::format(
        "{}{{\"layer\":{},\"site\":\"{}\",\"alpha\":{:.9g},\"act_mean\":{:.9g},\"act_std\":{:.9g},\"inv_std\":{:.9g},"
        "\"sat\":{:.9g}}}",
        i ? "," : "", r.layer, r.site, r.alpha, r.act_mean, r.act_std, r.inv_std, r.sat);
  }
  s += "]}";
  return s;
}

namespace {

// The "step" value of a metrics line, or -1 when the line has none.
int64_t step_of(const std::string& line) {
  const std::string key = "{\"step\":";
  if (line.compare(0, key.size(), key) != 0) return -1;
  return std::strtoll(line.c_str() + key.size(), nullptr, 10);
}

void truncate_after(const std::string& path, int64_t last_step) {
  std::ifstream in(path);
  if (!in) return;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    std::string line;
    while (std::getline(in, line))
      if (step_of(line) <= last_step) out << line << '\n';
    if (!out) throw std::runtime_error(path + ": cannot rewrite the metrics file (disk full?)");
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace

MetricsWriter::MetricsWriter(const std::string& path, std::optional<int64_t> keep_through_step) {
  if (keep_through_step) truncate_after(path, *keep_through_step);
  file_ = std::fopen(path.c_str(), keep_through_step ? "a" : "w");
  if (!file_) throw std::runtime_error(path + ": cannot open the metrics file for writing");
}

MetricsWriter::~MetricsWriter() {
  if (file_) std::fclose(file_);
}

void MetricsWriter::write(const StepMetrics& m) {
  const std::string line = to_json_line(m) + "\n";
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);  // a monitor reads the file while the run goes on
}

}  // namespace dytrain

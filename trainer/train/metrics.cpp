#include "trainer/train/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

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

namespace {

// A JSON number with `digits` significant digits, or null: JSON has no NaN or infinity, and metrics.jsonl must stay
// readable by any JSON parser (the monitor, the sweep report, pandas) even when a logged value is not finite.
std::string json_number(double v, int digits = 9) {
  if (!std::isfinite(v)) return "null";
  return fmt::format("{:.{}g}", v, digits);
}

// The inverse: null (and the nan / inf spellings of files written before null was used) read as NaN.
double number_of(const YAML::Node& n) {
  if (n.IsNull()) return std::nan("");
  const std::string text = n.Scalar();
  if (text == "nan" || text == "-nan" || text == "inf" || text == "-inf") return std::strtod(text.c_str(), nullptr);
  return n.as<double>();
}

void read_if(double* out, const YAML::Node& n, const char* key) {
  if (n[key]) *out = number_of(n[key]);
}
template <typename T>
void read_if(T* out, const YAML::Node& n, const char* key) {
  if (n[key]) *out = n[key].as<T>();
}

}  // namespace

std::string to_json_line(const StepMetrics& m) {
  // 9 significant digits round-trip fp32 values and keep lines short.
  std::string s = fmt::format("{{\"step\":{},\"loss\":{}", m.step, json_number(m.loss));
  if (m.val_loss) s += fmt::format(",\"val_loss\":{}", json_number(*m.val_loss));
  s += fmt::format(
      ",\"lr\":{},\"grad_norm\":{},\"tokens\":{},\"step_ms\":{},\"tok_s\":{},\"elapsed_s\":{},"
      "\"eta_s\":{},\"embed_scale\":{}",
      json_number(m.lr), json_number(m.grad_norm), m.tokens, json_number(m.step_ms, 4), json_number(m.tok_s, 6),
      json_number(m.elapsed_s, 6), json_number(m.eta_s, 6), json_number(m.embed_scale));
  if (m.mfu) s += fmt::format(",\"mfu\":{}", json_number(*m.mfu, 4));
  s += ",\"sites\":[";
  for (size_t i = 0; i < m.sites.size(); ++i) {
    const SiteMetrics& r = m.sites[i];
    s += fmt::format(
        "{}{{\"layer\":{},\"site\":\"{}\",\"alpha\":{},\"act_mean\":{},\"act_std\":{},\"inv_std\":{},"
        "\"sat\":{}}}",
        i ? "," : "", r.layer, r.site, json_number(r.alpha), json_number(r.act_mean), json_number(r.act_std),
        json_number(r.inv_std), json_number(r.sat));
  }
  s += "]}";
  return s;
}

StepMetrics parse_metrics_line(const std::string& line, const std::string& where) {
  StepMetrics m;
  try {
    // A JSON object is a YAML flow map: yaml-cpp parses it, no second JSON library.
    const YAML::Node n = YAML::Load(line);
    if (!n.IsMap() || !n["step"] || !n["loss"]) throw std::runtime_error("not a metrics object with step and loss");
    m.step = n["step"].as<int64_t>();
    m.loss = number_of(n["loss"]);
    if (n["val_loss"]) m.val_loss = number_of(n["val_loss"]);
    if (n["mfu"]) m.mfu = number_of(n["mfu"]);
    read_if(&m.lr, n, "lr");
    read_if(&m.grad_norm, n, "grad_norm");
    read_if(&m.tokens, n, "tokens");
    read_if(&m.step_ms, n, "step_ms");
    read_if(&m.tok_s, n, "tok_s");
    read_if(&m.elapsed_s, n, "elapsed_s");
    read_if(&m.eta_s, n, "eta_s");
    read_if(&m.embed_scale, n, "embed_scale");
    if (n["sites"])
      for (const auto& s : n["sites"]) {
        SiteMetrics r;
        read_if(&r.layer, s, "layer");
        read_if(&r.site, s, "site");
        read_if(&r.alpha, s, "alpha");
        read_if(&r.act_mean, s, "act_mean");
        read_if(&r.act_std, s, "act_std");
        read_if(&r.inv_std, s, "inv_std");
        read_if(&r.sat, s, "sat");
        m.sites.push_back(r);
      }
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("{}: cannot read the metrics line ({}); is this a dytrain metrics.jsonl?",
                                         where, e.what()));
  }
  return m;
}

std::vector<StepMetrics> read_metrics(const std::string& path) { return MetricsTail(path).read_new(); }

std::vector<StepMetrics> MetricsTail::read_new(bool* restarted) {
  if (restarted) *restarted = false;
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path_, ec);
  if (ec) return {};
  if (size < offset_) {
    offset_ = 0;
    lines_read_ = 0;
    if (restarted) *restarted = true;
  }
  std::ifstream in(path_, std::ios::binary);
  in.seekg(std::streamoff(offset_));
  std::string chunk(size - offset_, '\0');
  in.read(chunk.data(), std::streamsize(chunk.size()));
  chunk.resize(size_t(in.gcount()));

  std::vector<StepMetrics> out;
  size_t start = 0;
  for (size_t nl = chunk.find('\n'); nl != std::string::npos; nl = chunk.find('\n', start)) {
    ++lines_read_;
    if (nl > start)
      out.push_back(parse_metrics_line(chunk.substr(start, nl - start), fmt::format("{}:{}", path_, lines_read_)));
    start = nl + 1;
  }
  offset_ += start;
  return out;
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

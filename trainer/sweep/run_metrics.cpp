#include "trainer/sweep/run_metrics.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace dytrain {
namespace {

template <typename T>
void read_if(T* out, const YAML::Node& n, const char* key) {
  if (n[key]) *out = n[key].as<T>();
}

}  // namespace

MetricsLine parse_metrics_line(const std::string& line, const std::string& where) {
  MetricsLine m;
  try {
    const YAML::Node n = YAML::Load(line);
    if (!n.IsMap() || !n["step"] || !n["loss"])
      throw std::runtime_error("not a metrics object with step and loss");
    m.step = n["step"].as<int64_t>();
    // yaml-cpp reads .nan/.inf spellings only; a JSON writer never emits NaN (the trainer stops first).
    m.loss = n["loss"].as<double>();
    if (n["val_loss"]) m.val_loss = n["val_loss"].as<double>();
    if (n["mfu"]) m.mfu = n["mfu"].as<double>();
    read_if(&m.lr, n, "lr");
    read_if(&m.grad_norm, n, "grad_norm");
    read_if(&m.tok_s, n, "tok_s");
    read_if(&m.elapsed_s, n, "elapsed_s");
    read_if(&m.eta_s, n, "eta_s");
    read_if(&m.tokens, n, "tokens");
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

std::vector<MetricsLine> read_metrics(const std::string& path) {
  MetricsTail tail(path);
  return tail.read_new();
}

std::vector<MetricsLine> MetricsTail::read_new(bool* restarted) {
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

  std::vector<MetricsLine> out;
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

}  // namespace dytrain

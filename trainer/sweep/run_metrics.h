// Reading a run's metrics.jsonl (written by trainer/train/metrics.cpp), whole or incrementally while it grows.
//
// Design decisions:
// - Each line is a JSON object, which is a YAML flow map: yaml-cpp parses it, no second JSON library.
// - The incremental reader keeps a byte offset and consumes complete lines only, so a line the trainer is still
//   writing is read on the next poll, never half. A file that shrank (a resumed run rewrites it) is read afresh.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "trainer/train/metrics.h"

namespace dytrain {

// One metrics line. Fields absent from the line stay at their defaults (optionals empty).
struct MetricsLine {
  int64_t step = 0;
  double loss = 0.0;
  std::optional<double> val_loss;
  double lr = 0.0, grad_norm = 0.0, tok_s = 0.0, elapsed_s = 0.0, eta_s = 0.0;
  int64_t tokens = 0;
  std::optional<double> mfu;          // model FLOPs utilisation, when the trainer logs it
  std::vector<SiteMetrics> sites;     // only at log steps
};

// Parses one line; throws std::runtime_error naming `where` (file:line) when it is not a metrics object.
MetricsLine parse_metrics_line(const std::string& line, const std::string& where);

// Every line of a metrics file; an empty vector when the file does not exist.
std::vector<MetricsLine> read_metrics(const std::string& path);

class MetricsTail {
 public:
  explicit MetricsTail(std::string path) : path_(std::move(path)) {}
  // The complete lines appended since the last call; `*restarted` (if given) is set when the file was rewritten
  // and the returned lines start from its beginning again.
  std::vector<MetricsLine> read_new(bool* restarted = nullptr);

 private:
  std::string path_;
  uint64_t offset_ = 0;
  int64_t lines_read_ = 0;
};

}  // namespace dytrain

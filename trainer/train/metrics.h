// Training metrics: one JSON object per log step in <run>/metrics.jsonl (fields documented in the README), built
// from the step's figures and the norm-site moments the forward passes gathered over the whole global batch. The
// writer and the reader of a line live here together, so the format has one home.
#pragma once
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "kernels/cpu/dyt.h"

namespace dytrain {

// One norm site at one log step. alpha is the value the step's forward passes used.
struct SiteMetrics {
  int layer = 0;             // -1 for the final norm
  std::string site;          // attn | ffn | final
  double alpha = 0.0;        // 0 for RMSNorm sites
  double act_mean = 0.0;     // mean of the site's input
  double act_std = 0.0;      // std of the site's input (population, over every element of the global batch)
  double inv_std = 0.0;      // 1 / act_std
  double sat = 0.0;          // fraction of elements with |alpha * x| > 2
};

// sites[s] from moments[s] and alphas[s], s in the model's site order (layer 0 attn, layer 0 ffn, ..., final).
std::vector<SiteMetrics> site_metrics(const std::vector<cpu::SiteMoments>& moments, const std::vector<float>& alphas);

struct StepMetrics {
  int64_t step = 0;          // optimizer steps done
  double loss = 0.0;         // mean train loss of the step's global batch
  std::optional<double> val_loss;
  double lr = 0.0;           // peak-group lr (optim.lr times the schedule factor)
  double grad_norm = 0.0;    // global L2 norm before clipping
  int64_t tokens = 0;        // tokens trained on so far
  double step_ms = 0.0;      // wall time of this step
  double tok_s = 0.0;        // tokens per second of this step
  double elapsed_s = 0.0;    // wall time since the run (or resume) started
  double eta_s = 0.0;        // estimated time to max_steps
  double embed_scale = 0.0;  // the learnable scalar after the embedding (0 when off)
  std::optional<double> mfu; // model FLOPs utilization of each device (absent when its peak is unknown: CPU)
  std::vector<SiteMetrics> sites;  // only at log steps
};

std::string to_json_line(const StepMetrics& m);

// Parses one line of metrics.jsonl; fields absent from the line keep their defaults. Throws std::runtime_error
// naming `where` (file:line) when the line is not a metrics object.
StepMetrics parse_metrics_line(const std::string& line, const std::string& where);

// Every complete line of a metrics file; an empty vector when the file does not exist.
std::vector<StepMetrics> read_metrics(const std::string& path);

// Reads metrics.jsonl while a run appends to it. It keeps a byte offset and consumes complete lines only, so a line
// the trainer is still writing is read on the next poll, never half; a file that shrank (a resumed run rewrites it)
// is read afresh.
class MetricsTail {
 public:
  explicit MetricsTail(std::string path) : path_(std::move(path)) {}
  // The complete lines appended since the last call; `*restarted` (if given) is set when the file was rewritten
  // and the returned lines start from its beginning again.
  std::vector<StepMetrics> read_new(bool* restarted = nullptr);

 private:
  std::string path_;
  uint64_t offset_ = 0;
  int64_t lines_read_ = 0;
};

// Appends lines to metrics.jsonl. On resume, lines for steps after the checkpoint are dropped first (the file is
// rewritten under a temporary name and renamed), so the file describes one trajectory.
class MetricsWriter {
 public:
  MetricsWriter(const std::string& path, std::optional<int64_t> keep_through_step);
  ~MetricsWriter();
  void write(const StepMetrics& m);

 private:
  std::FILE* file_ = nullptr;
};

}  // namespace dytrain

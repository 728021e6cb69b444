// Training metrics: one JSON object per log step in <run>/metrics.jsonl (fields documented in the README), built
// from the step's figures and the norm-site moments the forward passes gathered over the whole global batch.
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
  std::vector<SiteMetrics> sites;
};

std::string to_json_line(const StepMetrics& m);

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

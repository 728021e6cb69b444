// `dytrain monitor <run or sweep dir>`: a live terminal view of a running job, redrawn every few seconds from the
// files the job writes (metrics.jsonl, status.yaml, sweep.yaml); it never talks to the job.
//
// Design decisions:
// - Each run's metrics.jsonl is tailed (MetricsTail): a redraw reads only the lines appended since the last one,
//   so watching a long run costs nothing.
// - Plain ANSI (clear screen + home) rather than curses: works over ssh, in tmux and in a Slurm log viewer, and
//   --once prints one frame without escapes for scripts and tests.
// - The per-layer table comes from the newest line that carries sites (log steps), shown with its step.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "trainer/train/metrics.h"

namespace dytrain {

// What is known of one run, updated incrementally.
class RunView {
 public:
  // max_steps: known ahead from the sweep index, so a pending point shows it; 0 reads it from config.yaml.
  explicit RunView(std::string dir, int max_steps = 0);
  void refresh();
  std::string frame() const;         // header + per-layer table
  std::string summary_line() const;  // one line for a sweep's point list
  std::string status() const;        // status.yaml's, else running / finished / pending
  int64_t step() const { return last_ ? last_->step : 0; }
  int max_steps() const { return max_steps_; }
  double elapsed_s() const { return elapsed_s_; }

 private:
  std::string dir_;
  MetricsTail tail_;
  std::optional<StepMetrics> last_, last_sites_;
  std::optional<std::pair<int64_t, double>> last_val_;  // (step, val_loss)
  int max_steps_ = 0;
  double elapsed_s_ = 0.0;           // from status.yaml once finished
  std::string status_;
  double seconds_since_write_ = 0.0;
};

// A run directory (has metrics.jsonl or config.yaml) or a sweep directory (has sweep.yaml or point sub-dirs).
class Monitor {
 public:
  explicit Monitor(std::string dir);
  void refresh();
  std::string frame() const;
  bool finished() const;  // the run, or every point of the sweep, has ended

 private:
  std::string dir_;
  bool is_sweep_ = false;
  std::unique_ptr<RunView> run_;
  std::map<std::string, std::unique_ptr<RunView>> points_;  // by name
  std::vector<std::string> order_;
};

struct MonitorOptions {
  std::string dir;
  double interval_s = 2.0;
  bool once = false;
};

// Returns the exit code: 0, or 2 when dir is neither a run nor a sweep.
int run_monitor(const MonitorOptions& opt);

}  // namespace dytrain

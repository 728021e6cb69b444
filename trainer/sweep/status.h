// The small files a sweep keeps besides its runs: <point>/status.yaml (what became of a point) and
// <sweep>/sweep.yaml (the list of all points, so a monitor can show those not started yet).
//
// Design decisions:
// - Both are YAML written through write_file_atomic: a monitor or a report reading them mid-sweep sees the old or
//   the new file, never half of one.
// - status.yaml is written by the runner, not the trainer: the trainer stays unaware of sweeps.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace dytrain {

// running | done | diverged | failed | interrupted. done and diverged are final: a re-run skips them.
struct PointStatus {
  std::string status;
  int exit_code = 0;        // the child's exit status; -N when signal N ended it
  double elapsed_s = 0.0;   // wall time of the last attempt
  std::string reason;       // why diverged / failed, one line
};

bool is_final(const PointStatus& s);

std::optional<PointStatus> read_point_status(const std::string& point_dir);
void write_point_status(const std::string& point_dir, const PointStatus& s);

struct SweepIndexEntry {
  std::string name;
  int max_steps = 0;
};

struct SweepIndex {
  std::string name;
  std::string spec;                     // absolute path of the spec file
  std::vector<SweepIndexEntry> points;  // in expansion order
};

void write_sweep_index(const std::string& sweep_dir, const SweepIndex& index);
std::optional<SweepIndex> read_sweep_index(const std::string& sweep_dir);

// The step of the newest sound checkpoint under run_dir/checkpoints/ (the one --resume would pick), if any.
std::optional<long long> latest_checkpoint_step(const std::string& run_dir);

}  // namespace dytrain

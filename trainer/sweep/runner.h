// `dytrain sweep run`: each point of a spec as an ordinary `dytrain train` child process in <sweep>/<point>/,
// one after another on this machine (mode local) or through one mpirun per point (mode mpirun).
//
// Design decisions:
// - Children, not in-process runs: a point that crashes or diverges cannot take the sweep down, mpirun mode is the
//   same code path with a launcher in front, and each run is exactly what `dytrain train` would do by hand.
// - Points with status done or diverged are skipped on a re-run; a point with a checkpoint short of max_steps
//   (interrupted, or a failed attempt) resumes with --resume; a final checkpoint without a status counts as done.
// - While a child runs, the runner tails its metrics.jsonl (DivergenceWatch) and stops it with SIGTERM, then
//   SIGKILL after a grace period, when the loss explodes. The child's own console output goes to
//   <point>/console.log so the sweep's terminal shows only progress.
// - SIGINT / SIGTERM to the runner are passed on to the child (which checkpoints and exits 4); the point is marked
//   interrupted and the sweep stops, to be continued by running it again.
#pragma once
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "trainer/sweep/spec.h"

namespace dytrain {

struct RunnerOptions {
  std::string sweep_dir;                      // default runs/<spec name>
  std::string exe;                            // the dytrain binary; default this process's (/proc/self/exe)
  std::string mode;                           // local | mpirun; empty: the spec's launch.mode
  std::optional<int> only_point;              // run this point index only (a Slurm array task)
  std::vector<std::string> extra_overrides;   // appended to every point's overrides
  bool dry_run = false;                       // print the commands, run nothing
  double poll_s = 0.2;                        // metrics poll period while a child runs
  double kill_grace_s = 10.0;                 // SIGTERM -> SIGKILL delay for a diverging child
  std::FILE* out = stdout;                    // progress lines
};

// The argv of one point's child: [mpirun -np N args...] exe train BASE --set ... --run-dir DIR [--resume].
std::vector<std::string> point_command(const SweepSpec& spec, const SweepPoint& point, const RunnerOptions& opt,
                                       const std::string& mode, bool resume);

// Runs the sweep. Returns 0 when every point is done or diverged, kExitError when some failed, kExitInterrupted
// when stopped by a signal, kExitBadInput for a bad option (message printed). Throws ConfigError, before writing
// anything, when the sweep's or a point's name is no plain folder name (check_sweep_names).
int run_sweep(const SweepSpec& spec, const RunnerOptions& opt);

// The resolved sweep directory and dytrain binary of `opt` (defaults filled in, absolute). sweep_dir_of throws
// ConfigError when the default runs/<name> would not be a folder inside runs/.
std::string sweep_dir_of(const SweepSpec& spec, const RunnerOptions& opt);
std::string exe_of(const RunnerOptions& opt);

}  // namespace dytrain

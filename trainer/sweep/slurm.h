// `dytrain sweep run SPEC --mode slurm` (or launch.mode: slurm): an sbatch array script with one task per point,
// plus the list of points by task id, under <sweep>/slurm/. Each task runs `dytrain sweep run SPEC --point $ID`, so
// a task goes through the same runner as a local sweep: completed points are skipped, divergence is watched,
// status.yaml written, and resubmitting the same script finishes what is left.
#pragma once
#include <string>

#include "trainer/sweep/runner.h"
#include "trainer/sweep/spec.h"

namespace dytrain {

// Writes <sweep>/slurm/sweep.sbatch, <sweep>/slurm/points.txt and <sweep>/sweep.yaml (for the monitor); returns
// the script's path.
std::string write_slurm_script(const SweepSpec& spec, const RunnerOptions& opt);

// The script text (tested without touching the disk). `cwd` is where the tasks run (data paths are relative to it).
std::string slurm_script_text(const SweepSpec& spec, const RunnerOptions& opt, const std::string& cwd);

}  // namespace dytrain
